from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError


@dataclass
class Batch:
    """What one training step sees. Inputs are already in their weak view (flip/crop, if configured)."""

    x_l: torch.Tensor  # (B, ...) labelled inputs
    y_l: torch.Tensor  # (B,) labels
    x_u: torch.Tensor | None = None  # (Bu, ...) unlabelled inputs, when the method uses them
    # Weak view -> strong view (RandAugment on top of the same crop); drawn from the run's generator.
    strong: Callable[[torch.Tensor], torch.Tensor] | None = None
    teacher: nn.Module | None = None  # a frozen teacher in eval mode, for methods that distil from one


StepFn = Callable[[nn.Module, Batch, Any], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    step: StepFn
    options: type  # a dataclass of the method's options, with defaults
    uses_unlabeled: Callable[[Any], bool]  # options -> whether batches need x_u
    description: str = ""
    needs_teacher: bool = False  # the run must name a teacher run directory (config key `teacher`)


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, *, options: type, uses_unlabeled: Callable[[Any], bool], description: str = "",
                    needs_teacher: bool = False):
    def wrap(step: StepFn) -> StepFn:
        if name in METHODS:
            raise ValueError(f"method '{name}' registered twice")
        METHODS[name] = MethodSpec(name, step, options, uses_unlabeled, description, needs_teacher)
        return step
    return wrap


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ConfigError(f"method.name: unknown method '{name}' (known: {', '.join(sorted(METHODS))})")
    return METHODS[name]


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batch accuracy as a detached scalar tensor (no host sync)."""
    return (logits.detach().argmax(dim=1) == y).float().mean()
