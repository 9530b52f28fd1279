"""divrec's Hydra launchers (found by Hydra's plugin scan of the ``hydra_plugins`` namespace).

``hydra/launcher=gpu_pool``: run sweep jobs in parallel on one machine, one GPU per job,
claimed through per-GPU lock files (see :mod:`hydra_plugins.divrec_launchers.gpu_pool`).
Hydra imports every module here at start-up, so nothing heavy is imported at module level.
"""
