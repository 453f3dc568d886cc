"""semireg: train neural networks that learn more from less (few labels, shifted inputs)."""

__version__ = "0.1.0"

from .api import evaluate, fit, fit_system  # noqa: E402

__all__ = ["__version__", "evaluate", "fit", "fit_system"]
