"""Methods: pure loss functions registered by name, each with an options dataclass.

A method's step maps (model, batch, options) to a dict of named scalar terms; "loss" is the total
that the engine back-propagates. Every other entry is logged.
"""

from .registry import METHODS, Batch, MethodSpec, get_method, register_method
from . import consistency, supervised, vat  # noqa: F401  (register the built-in methods)

__all__ = ["METHODS", "Batch", "MethodSpec", "get_method", "register_method"]
