from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from ..errors import ConfigError

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model '{name}' registered twice")
        MODELS[name] = fn
        return fn

    return wrap


def build_model(name: str, in_shape: tuple[int, ...], num_classes: int, **options) -> nn.Module:
    """Build a registered model; options the builder does not take are dropped only if falsy."""
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}' (known: {', '.join(sorted(MODELS))})")
    builder = MODELS[name]
    accepted = inspect.signature(builder).parameters
    for key, value in options.items():
        if key not in accepted and value:
            raise ConfigError(f"model '{name}' does not take option '{key}'")
    kwargs = {k: v for k, v in options.items() if k in accepted}
    return builder(tuple(in_shape), num_classes, **kwargs)
