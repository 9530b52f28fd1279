"""Serving a trained run: ``recommend()`` and the ``divrec-recommend`` CLI."""
