"""Errors a user can fix. The CLI prints them as one line, without a traceback."""


class SemiregError(Exception):
    """Base of every error caused by input: a recipe, a key, a file, a shape."""


class ConfigError(SemiregError):
    """An unknown recipe or key, a value of the wrong type, an impossible combination."""


class BudgetError(ConfigError):
    """A time budget too short for the work asked of it on this machine."""


class DataError(SemiregError, ValueError):
    """A missing, corrupt or inconsistent data file or array."""


class RunDirError(SemiregError):
    """A run directory that exists (without --overwrite/--resume) or cannot be resumed."""


class DivergedError(SemiregError):
    """The loss turned NaN or infinite; the last good checkpoint is kept."""


def mismatch(exc: BaseException) -> str:
    """The informative line of a load_state_dict error (its first line only names the module):
    'size mismatch for 0.weight: ...' or 'Missing key(s) in state_dict: ...', shortened."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)
    return detail if len(detail) <= 240 else detail[:237] + "..."
