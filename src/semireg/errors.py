"""Errors a user can fix. The CLI prints them as one line, without a traceback."""


class SemiregError(Exception):
    """Base of every error caused by input: a recipe, a key, a file, a shape."""


class ConfigError(SemiregError):
    """An unknown recipe or key, a value of the wrong type, an impossible combination."""


class DataError(SemiregError):
    """A missing, corrupt or inconsistent data file or array."""


class RunDirError(SemiregError):
    """A run directory that exists (without --overwrite/--resume) or cannot be resumed."""


class DivergedError(SemiregError):
    """The loss turned NaN or infinite; the last good checkpoint is kept."""
