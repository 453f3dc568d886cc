from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from ..errors import ConfigError

MODELS: dict[str, Callable[..., nn.Module]] = {}
# Earlier names of registered models, so that run directories and recipes that use them still load.
ALIASES: dict[str, str] = {}


def register_model(name: str, aliases: tuple[str, ...] = ()):
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS or name in ALIASES:
            raise ValueError(f"model '{name}' registered twice")
        MODELS[name] = fn
        ALIASES.update({alias: name for alias in aliases})
        return fn

    return wrap


def canonical_name(name: str) -> str:
    """A model's registered name, for its own name or an earlier one."""
    return ALIASES.get(name, name)


def build_model(name: str, in_shape: tuple[int, ...], num_classes: int, **options) -> nn.Module:
    """Build a registered model; options the builder does not take are dropped only if falsy."""
    name = canonical_name(name)
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}' (known: {', '.join(sorted(MODELS))})")
    builder = MODELS[name]
    accepted = inspect.signature(builder).parameters
    for key, value in options.items():
        if key not in accepted and value:
            raise ConfigError(f"model '{name}' does not take option '{key}'")
    kwargs = {k: v for k, v in options.items() if k in accepted}
    return builder(tuple(in_shape), num_classes, **kwargs)
