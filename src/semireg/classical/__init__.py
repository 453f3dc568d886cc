"""Classical semi-supervised methods (label spreading, self-training), fitted on all rows at once."""

from . import labelspreading, selftraining  # noqa: F401  (register the built-in classical methods)
from .registry import CLASSICAL, ClassicalSpec, get_classical, register_classical

__all__ = ["CLASSICAL", "ClassicalSpec", "get_classical", "register_classical"]
