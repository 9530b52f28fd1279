"""User-facing errors: one clear line, no deep traceback (train.py prints them plainly)."""


class DivrecError(Exception):
    """Base class for errors caused by the user's data or configuration."""


class DataError(DivrecError):
    """A data file or folder is missing, empty, malformed or inconsistent."""


class ConfigError(DivrecError):
    """A configuration key is unknown, has a wrong type or an out-of-range value."""
