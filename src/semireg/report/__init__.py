"""What a person reads after runs: comparison tables and charts."""

from .compare import compare, group_runs

__all__ = ["compare", "group_runs"]
