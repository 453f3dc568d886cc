"""Model registry: name -> builder(in_shape, num_classes, **options) -> nn.Module mapping a batch to logits."""

from . import cnn, mlp, resnet, wrn  # noqa: F401  (register the built-in models)
from .outputs import LogitsOnly, describe_output, logits_of, unwrap
from .registry import ALIASES, MODELS, build_model, canonical_name, register_model
from .state import state_buffers

__all__ = [
    "ALIASES",
    "MODELS",
    "canonical_name",
    "LogitsOnly",
    "build_model",
    "describe_output",
    "logits_of",
    "register_model",
    "state_buffers",
    "unwrap",
]
