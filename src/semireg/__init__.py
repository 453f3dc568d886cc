"""semireg: train neural networks that learn more from less (few labels, shifted inputs)."""

from .api import evaluate, fit, fit_system, select
from .version import __version__

__all__ = ["__version__", "evaluate", "fit", "fit_system", "select"]
