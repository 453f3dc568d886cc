"""The VAT paper's MLP (784-1200-600-300-150-150-10, BatchNorm after every hidden layer)."""

from __future__ import annotations

import math

from torch import nn

from .registry import register_model

VAT_HIDDEN = [1200, 600, 300, 150, 150]


@register_model("mlp")
def mlp(
    in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0, hidden: list[int] | None = None
) -> nn.Module:
    sizes = [math.prod(in_shape)] + list(hidden or VAT_HIDDEN)
    layers: list[nn.Module] = [nn.Flatten()]
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(sizes[-1], num_classes))
    return nn.Sequential(*layers)
