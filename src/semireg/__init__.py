"""semireg: train neural networks that learn more from less (few labels, shifted inputs)."""

from .api import evaluate, fit, fit_system, list_classical, list_methods, list_models, list_systems, select
from .version import __version__

__all__ = [
    "SemiSupervisedClassifier",
    "__version__",
    "evaluate",
    "fit",
    "fit_system",
    "list_classical",
    "list_methods",
    "list_models",
    "list_systems",
    "select",
]


def __getattr__(name: str):
    # The estimator subclasses scikit-learn's BaseEstimator: importing scikit-learn costs ~2 s, which
    # `semireg --help` and the training commands need not pay.
    if name == "SemiSupervisedClassifier":
        from .estimator import SemiSupervisedClassifier

        return SemiSupervisedClassifier
    raise AttributeError(f"module 'semireg' has no attribute {name!r}")
