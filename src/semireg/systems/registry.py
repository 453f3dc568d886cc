"""Registry of multi-network systems (`method.name` in a config, like the single-model methods)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..phases import System

# (input shape, number of classes, options, user modules by name) -> System
Builder = Callable[[tuple[int, ...], int, Any, dict[str, nn.Module]], System]


@dataclass(frozen=True)
class SystemSpec:
    name: str
    build: Builder
    options: type  # a dataclass of the system's options, with defaults
    modules: tuple[str, ...]  # the names a user may replace with their own nn.Module
    description: str = ""


SYSTEMS: dict[str, SystemSpec] = {}


def register_system(name: str, *, options: type, modules: tuple[str, ...], description: str = ""):
    def wrap(build: Builder) -> Builder:
        if name in SYSTEMS:
            raise ValueError(f"system '{name}' registered twice")
        SYSTEMS[name] = SystemSpec(name, build, options, modules, description)
        return build

    return wrap


def get_system(name: str) -> SystemSpec:
    if name not in SYSTEMS:
        raise ConfigError(f"unknown system '{name}' (known: {', '.join(sorted(SYSTEMS))})")
    return SYSTEMS[name]


def user_modules(spec: SystemSpec, modules: dict[str, nn.Module] | None) -> dict[str, nn.Module]:
    modules = dict(modules or {})
    unknown = [k for k in modules if k not in spec.modules]
    if unknown:
        raise ConfigError(f"system '{spec.name}' has no module {unknown}; its modules are {list(spec.modules)}")
    bad = [k for k, m in modules.items() if not isinstance(m, nn.Module)]
    if bad:
        raise ConfigError(f"modules {bad} must be torch.nn.Module instances")
    return modules
