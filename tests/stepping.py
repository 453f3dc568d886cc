"""Shared by the optimizer tests: two copies of a model stepped side by side."""

from __future__ import annotations

import torch
from torch import nn


def assert_steps_alike(pairs: list[tuple[nn.Module, torch.optim.Optimizer]], x: torch.Tensor, steps: int) -> None:
    """Step every (model, optimizer) pair on the same loss `steps` times; their parameters end equal."""
    for _ in range(steps):
        for model, opt in pairs:
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    (first, _), *others = pairs
    for model, _ in others:
        for a, b in zip(first.parameters(), model.parameters()):
            torch.testing.assert_close(a, b)
