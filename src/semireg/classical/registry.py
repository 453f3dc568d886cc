"""Classical semi-supervised methods: a fit on all rows at once (no optimizer steps of a network),
registered by name with an options dataclass, as the step methods are.

A classical fit maps (labelled rows, their labels, unlabelled rows, class count, options) to an
`nn.Module` in eval mode whose forward gives (B, K) logits, so that every consumer of a trained
model (predict, evaluation, the estimator) takes it as it takes a network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

# (x_l (N_l, D), y_l (N_l,), x_u (N_u, D) or None, num_classes, options) -> fitted module
FitFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, int, Any], nn.Module]
# (the fitted module's state_dict, options) -> that module again (from a checkpoint or an export)
LoadFn = Callable[[dict[str, torch.Tensor], Any], nn.Module]


@dataclass(frozen=True)
class ClassicalSpec:
    name: str
    fit: FitFn
    load: LoadFn
    options: type
    description: str = ""


CLASSICAL: dict[str, ClassicalSpec] = {}


def register_classical(name: str, *, options: type, load: LoadFn, description: str = ""):
    def wrap(fit: FitFn) -> FitFn:
        if name in CLASSICAL:
            raise ValueError(f"classical method '{name}' registered twice")
        CLASSICAL[name] = ClassicalSpec(name, fit, load, options, description)
        return fit

    return wrap


def get_classical(name: str) -> ClassicalSpec:
    if name not in CLASSICAL:
        raise ConfigError(f"method.name: unknown classical method '{name}' (known: {', '.join(sorted(CLASSICAL))})")
    return CLASSICAL[name]


def rows(x: torch.Tensor) -> torch.Tensor:
    """(N, ...) inputs as (N, D) float rows: classical methods see every input as one vector."""
    return x.reshape(len(x), -1).float()
