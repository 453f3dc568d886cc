"""Model registry: name -> builder(in_shape, num_classes, **options) -> nn.Module mapping a batch to logits."""

from . import cnn, mlp, resnet, wrn  # noqa: F401  (register the built-in models)
from .registry import MODELS, build_model, register_model

__all__ = ["MODELS", "build_model", "register_model"]
