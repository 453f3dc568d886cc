"""The two CNNs of the source posts (registered under their earlier names too) and a small CPU CNN. Each sizes
its dense layer from the input shape."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .registry import register_model


def _flat_size(features: nn.Module, in_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        try:
            return features(torch.zeros(1, *in_shape)).numel()
        except RuntimeError as exc:
            raise ConfigError(f"input shape {in_shape} is too small for this CNN ({exc})") from None


@register_model("cnn_keras", aliases=("cnn_seed000",))
def cnn_keras(in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    """The Keras MNIST example's CNN (the dropout × VAT post): conv32-conv32-maxpool-dense128.

    With dropout > 0 the Keras example's two dropouts are used: `dropout/2` after the pool (0.25)
    and `dropout` after the dense layer (0.5).
    """
    if len(in_shape) != 3:
        raise ConfigError(f"cnn_keras takes images (C, H, W), got input shape {in_shape}")
    features = nn.Sequential(
        nn.Conv2d(in_shape[0], 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(dropout / 2),
        nn.Flatten(),
    )
    return nn.Sequential(
        features,
        nn.Linear(_flat_size(features, in_shape), 128),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(128, num_classes),
    )


@register_model("cnn_bn", aliases=("cnn_seed001",))
def cnn_bn(in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> nn.Module:
    """The VAT-on-MNIST post's CNN: two conv(k4, p2)-BatchNorm-ReLU-maxpool blocks, dense 100, dense out."""
    if len(in_shape) != 3:
        raise ConfigError(f"cnn_bn takes images (C, H, W), got input shape {in_shape}")
    features = nn.Sequential(
        nn.Conv2d(in_shape[0], 32, 4, padding=2),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 4, padding=2),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    return nn.Sequential(
        features,
        nn.Linear(_flat_size(features, in_shape), 100),
        nn.Dropout(dropout),
        nn.ReLU(),
        nn.Linear(100, num_classes),
    )


@register_model("cnn_small")
def cnn_small(
    in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0, hidden: list[int] | None = None
) -> nn.Module:
    """A small fast CNN for CPU runs on 32x32 colour images: conv-BN-ReLU-maxpool blocks (widths
    `hidden`, default [32, 64, 128]; about 10 M multiply-adds per image), global average pool."""
    if len(in_shape) != 3:
        raise ConfigError(f"cnn_small takes images (C, H, W), got input shape {in_shape}")
    widths = list(hidden) if hidden else [32, 64, 128]
    layers: list[nn.Module] = []
    c_in = in_shape[0]
    for width in widths:
        layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d(2))
        c_in = width
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes)
    )
