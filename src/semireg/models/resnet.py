"""Pre-activation ResNets for CIFAR-sized images: ResNet-18 (He et al. 2016b) and a ResNet-50-v2-style net.

Inputs are images in [0, 1]; the first layer rescales them to [-1, 1], as the consistency-training
post's Keras model does (`Rescaling(1/127.5, offset=-1)`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .droppath import DropPath, block_rates
from .registry import register_model


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3, BN-ReLU-conv3x3, identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int, drop_path: float = 0.0) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.drop_path = DropPath(drop_path)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, c_out, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        skip = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return self.drop_path(out) + skip


class PreActBottleneck(nn.Module):
    """ResNet-v2 bottleneck: BN-ReLU-conv1x1, BN-ReLU-conv3x3 (stride), BN-ReLU-conv1x1 (x4)."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int, drop_path: float = 0.0) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.drop_path = DropPath(drop_path)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        skip = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return self.drop_path(out) + skip


class PreActResNet(nn.Module):
    def __init__(
        self,
        block: type,
        depths: list[int],
        in_channels: int,
        num_classes: int,
        stem: str = "cifar",
        base_width: int = 64,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if stem == "cifar":  # 3x3 conv, stride 1: keeps 32x32 resolution
            self.stem = nn.Conv2d(in_channels, base_width, 3, 1, 1, bias=False)
        elif stem == "imagenet":  # Keras ResNet50V2: 7x7/2 conv then 3x3/2 max-pool
            self.stem = nn.Sequential(nn.Conv2d(in_channels, base_width, 7, 2, 3, bias=True), nn.MaxPool2d(3, 2, 1))
        else:
            raise ConfigError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        layers, c_in = [], base_width
        rates = iter(block_rates(drop_path, sum(depths)))
        for i, depth in enumerate(depths):
            width = base_width * 2**i
            for j in range(depth):
                layers.append(block(c_in, width, 2 if (j == 0 and i > 0) else 1, next(rates)))
                c_in = width * block.expansion
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c_in, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W) in [0, 1]
        return self.head(self.layers(self.stem(x * 2.0 - 1.0)))  # (B, K)


def _image_channels(name: str, in_shape: tuple[int, ...]) -> int:
    if len(in_shape) != 3:
        raise ConfigError(f"{name} takes images (C, H, W), got input shape {in_shape}")
    return in_shape[0]


@register_model("preact_resnet18")
def preact_resnet18(
    in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0, drop_path: float = 0.0
) -> nn.Module:
    return PreActResNet(
        PreActBlock,
        [2, 2, 2, 2],
        _image_channels("preact_resnet18", in_shape),
        num_classes,
        stem="cifar",
        dropout=dropout,
        drop_path=drop_path,
    )


@register_model("resnet50v2")
def resnet50v2(in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0, drop_path: float = 0.0) -> nn.Module:
    """Bottleneck pre-activation ResNet-50 with the ImageNet stem (the post's Keras ResNet50V2 at 72x72)."""
    return PreActResNet(
        PreActBottleneck,
        [3, 4, 6, 3],
        _image_channels("resnet50v2", in_shape),
        num_classes,
        stem="imagenet",
        dropout=dropout,
        drop_path=drop_path,
    )
