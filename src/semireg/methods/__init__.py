"""Methods: pure loss functions registered by name, each with an options dataclass.

A method's step maps (model, batch, options) to a dict of named scalar terms; "loss" is the total
that the engine back-propagates. Every other entry is logged. A method's regularisation or
unsupervised term is returned still attached to its graph under the spec's `unsup_term` name
(before its weight), so that tests can differentiate that term alone.
"""

from . import (  # noqa: F401  (register the built-in methods)
    consistency,
    fixmatch,
    flexmatch,
    freematch,
    meanteacher,
    pimodel,
    pseudolabel,
    supervised,
    uda,
    vat,
)
from .registry import METHODS, Batch, DataStats, MethodSpec, get_method, register_method

__all__ = ["METHODS", "Batch", "DataStats", "MethodSpec", "get_method", "register_method"]
