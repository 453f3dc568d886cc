"""Mean Teacher (Tarvainen & Valpola 2017): the student matches an EMA of its own weights.

    loss = CE(y_l, f(x_l)) + weight * ramp(t) * || softmax f(view_2) - softmax f_ema(view_1) ||^2

The teacher is the engine's EMA copy (train.ema_decay > 0); it predicts on the batch's weak view
without a graph, with BatchNorm on batch statistics (as the student) and its running statistics
left alone. The student predicts on a second, independent weak view. The EMA is what is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .common import ramp_up
from .pimodel import agreement_terms
from .registry import Batch, register_method
from .vat import frozen_running_stats


@dataclass
class MeanTeacherOptions:
    weight: float = 50.0  # USB's lambda_u for Mean Teacher
    warmup: float = 0.4


@torch.no_grad()
def teacher_probs(ema: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class probabilities of the EMA teacher in training mode (batch statistics, dropout), its
    running statistics untouched. (B, ...) -> (B, K)"""
    ema.train()
    try:
        with frozen_running_stats(ema):
            return F.softmax(ema(x).float(), dim=1)
    finally:
        ema.eval()


@register_method(
    "meanteacher",
    options=MeanTeacherOptions,
    uses_unlabeled=lambda o: True,
    mu=1,
    needs_ema=True,
    x_u_is_target=True,
    description="agreement with an exponential moving average of the model (Tarvainen & Valpola 2017)",
)
def meanteacher_step(model: nn.Module, batch: Batch, opts: MeanTeacherOptions) -> dict[str, torch.Tensor]:
    if batch.ema is None:
        raise ConfigError("meanteacher needs an EMA teacher: set train.ema_decay > 0 (e.g. 0.999)")
    target = teacher_probs(batch.ema, batch.x_u)  # (Bu, K)
    return agreement_terms(model, batch, target, weight=opts.weight * ramp_up(batch.progress, opts.warmup))
