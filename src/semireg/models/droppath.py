"""Stochastic depth (Huang et al. 2016): in training, each sample skips a residual branch with
probability `rate` (the branch is scaled by 1 / (1 - rate) when kept, so its expected value is
unchanged); in evaluation the branch always runs. Noisy Student noises its student this way."""

from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"a drop-path rate is in [0, 1), got {rate}")
        self.rate = rate

    def forward(self, branch: torch.Tensor) -> torch.Tensor:  # (B, ...) -> (B, ...)
        if not self.training or self.rate == 0.0:
            return branch
        keep = 1.0 - self.rate
        mask = torch.empty((len(branch),) + (1,) * (branch.dim() - 1), device=branch.device).bernoulli_(keep)
        return branch * (mask / keep).to(branch.dtype)


def block_rates(last_rate: float, n_blocks: int) -> list[float]:
    """Linearly increasing rates, the last block's = last_rate (the linear decay rule of the
    survival probability)."""
    return [last_rate * (i + 1) / n_blocks for i in range(n_blocks)]
