"""WideResNet-28-2 as the FixMatch / USB CIFAR benchmarks use it (BN momentum 0.001, leaky ReLU 0.1)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .droppath import DropPath, block_rates
from .registry import register_model


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=0.001)  # torch momentum 0.001 = TF decay 0.999


class WideBlock(nn.Module):
    def __init__(
        self, c_in: int, c_out: int, stride: int, activate_before_residual: bool = False, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.drop_path = DropPath(drop_path)
        self.bn1, self.conv1 = _bn(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = _bn(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if c_in != c_out or stride != 1 else None
        self.activate_before_residual = activate_before_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.bn1(x))
        skip = (
            self.shortcut(pre if self.activate_before_residual or self.shortcut is not None else x)
            if self.shortcut is not None
            else x
        )
        out = self.conv2(self.act(self.bn2(self.conv1(pre))))
        return self.drop_path(out) + skip


class WideResNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int = 28,
        widen: int = 2,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ConfigError(f"WideResNet depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks, c_in = [], widths[0]
        rates = iter(block_rates(drop_path, 3 * n))
        for stage, width in enumerate(widths[1:]):
            for j in range(n):
                blocks.append(
                    WideBlock(
                        c_in,
                        width,
                        2 if (j == 0 and stage > 0) else 1,
                        activate_before_residual=stage == 0,
                        drop_path=next(rates),
                    )
                )
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            _bn(c_in),
            nn.LeakyReLU(0.1, inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c_in, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, 32, 32) in [0, 1]
        return self.head(self.blocks(self.stem(x * 2.0 - 1.0)))


@register_model("wrn28_2")
def wrn28_2(in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0, drop_path: float = 0.0) -> nn.Module:
    if len(in_shape) != 3:
        raise ConfigError(f"wrn28_2 takes images (C, H, W), got input shape {in_shape}")
    return WideResNet(in_shape[0], num_classes, depth=28, widen=2, dropout=dropout, drop_path=drop_path)
