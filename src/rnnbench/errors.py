"""Errors that name what was wrong and what to do about it."""


class RnnbenchError(Exception):
    """Base class of every error rnnbench raises on purpose."""


class DataError(RnnbenchError):
    """A data file is missing, corrupt, truncated or of the wrong format."""


class ConfigError(RnnbenchError, ValueError):
    """A configuration value is invalid."""
