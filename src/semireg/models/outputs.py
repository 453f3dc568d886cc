"""Models whose forward returns more than a tensor of logits: a dict with "logits", a tuple (or
list) whose first item is the logits, or an object with `.logits` (as Hugging Face models return).
Every method calls `model(x)` and expects (B, K) logits; `LogitsOnly` makes such a model do that."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def logits_of(out: Any) -> torch.Tensor | None:
    """The logits in a model's output, or None when the output holds none we recognise."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        return out.get("logits") if isinstance(out.get("logits"), torch.Tensor) else None
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    found = getattr(out, "logits", None)
    return found if isinstance(found, torch.Tensor) else None


def describe_output(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return f"a tensor {tuple(out.shape)}"
    if isinstance(out, dict):
        return f"a dict with keys {sorted(map(str, out))[:6]} (no 'logits' tensor)"
    return f"a {type(out).__name__} (no logits tensor: give a tensor, a dict with 'logits', a tuple whose first item is the logits, or an object with .logits)"


class LogitsOnly(nn.Module):
    """Wraps a model so that its forward returns only the logits tensor. The wrapped model is
    `.inner`; its parameters are this module's, so training one trains the other."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = logits_of(self.inner(x))
        if logits is None:
            raise TypeError("the model's output holds no logits tensor")
        return logits


def unwrap(model: nn.Module) -> nn.Module:
    """The user's own module inside a LogitsOnly (and the module itself otherwise)."""
    return model.inner if isinstance(model, LogitsOnly) else model
