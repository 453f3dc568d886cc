"""Labels only: cross-entropy on the labelled batch. The baseline every method is compared with."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Batch, accuracy, register_method


@dataclass
class SupervisedOptions:
    label_smoothing: float = 0.0


def cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, *, label_smoothing: float = 0.0, sample_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy; with `sample_weight` (B,), a weighted mean of per-sample losses."""
    per_sample = F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=label_smoothing)  # (B,)
    if sample_weight is None:
        return per_sample.mean()
    return (per_sample * sample_weight).sum() / sample_weight.sum().clamp_min(1e-12)


@register_method(
    "supervised",
    options=SupervisedOptions,
    uses_unlabeled=lambda o: False,
    unsup_term=None,
    description="cross-entropy on the labelled images only",
)
def supervised_step(model: nn.Module, batch: Batch, opts: SupervisedOptions) -> dict[str, torch.Tensor]:
    logits = model(batch.x_l)  # (B, K)
    ce = cross_entropy(logits, batch.y_l, label_smoothing=opts.label_smoothing)
    return {"loss": ce, "ce": ce.detach(), "train_acc": accuracy(logits, batch.y_l)}
