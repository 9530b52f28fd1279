"""Third-party noise, silenced in one place: :func:`quiet_output` runs at the start of ``train``.

What goes and why:

- Lightning's (and torchmetrics') own console handler when the root logger already has one
  (Hydra's ``job_logging``): every INFO line was printed twice, once per handler.
- Lightning's "Tip: try litlogger / litmodels" adverts.
- Warnings about Lightning's internals or about what divrec does on purpose: the ``LeafSpec``
  deprecation (Lightning's use of torch's pytree API, once per loop), ``log_every_n_steps``
  larger than a small epoch, modules in eval mode at the start of training (the frozen
  encoder).
- Hugging Face progress bars when stderr is not a terminal (a log file gets one line per
  refresh).

Everything else (real warnings, GPU/TPU lines, checkpoint restores) is kept.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

NOISE_WARNINGS = (
    r".*LeafSpec.*is deprecated",  # lightning/pytorch/utilities/_pytree.py, not our code
    r"The number of training batches .* is smaller than the logging interval",  # small data
    r"Found \d+ module\(s\) in eval mode at the start of training",  # the frozen encoder
)
NOISE_LOG_PREFIXES = ("💡 Tip:",)  # litlogger / litmodels adverts
# Libraries that add a console handler of their own and still propagate to the root logger.
OWN_HANDLER_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "torchmetrics")
TIP_LOGGER = "lightning.pytorch.utilities.rank_zero"


class _DropPrefixes(logging.Filter):
    """Drops records whose message starts with one of ``NOISE_LOG_PREFIXES``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISE_LOG_PREFIXES)


def quiet_output() -> None:
    """Apply the warnings filters, logger fixes and progress-bar settings above (idempotent)."""
    for pattern in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    tips = logging.getLogger(TIP_LOGGER)
    if not any(isinstance(f, _DropPrefixes) for f in tips.filters):
        tips.addFilter(_DropPrefixes())
    one_handler_per_record()
    if not sys.stderr.isatty():
        no_progress_bars()


def one_handler_per_record() -> None:
    """With handlers on the root logger, libraries' own stream handlers go (propagation stays)."""
    if not logging.getLogger().handlers:  # no root handler: theirs is the only output
        return
    for name in OWN_HANDLER_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # not file or capture handlers
                logger.removeHandler(handler)
        logger.propagate = True


def no_progress_bars() -> None:
    """Hugging Face (datasets, hub, transformers) progress bars off, loaded or not; a user's
    own ``HF_*_DISABLE_PROGRESS_BARS`` setting wins."""
    env = ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")
    if any(v in os.environ for v in env):
        return
    for var in env:
        os.environ[var] = "1"
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
