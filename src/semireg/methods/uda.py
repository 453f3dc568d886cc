"""UDA (Xie et al. 2020): the strong view matches the weak view's sharpened prediction.

    loss = CE_tsa(y_l, f(x_l)) + weight * mean_b[ max p_w >= threshold ] * CE(sharpen(p_w, T), f(strong(x_u)))

Soft targets (T = 0.4) where FixMatch uses hard ones, and a lower confidence mask (0.8).
Training signal annealing (`tsa`) drops labelled images the model already predicts with
probability above eta_t = alpha_t (1 - 1/K) + 1/K, alpha_t following the schedule (linear, exp,
log) over training, so that a few labels are not memorised early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .common import make_dist_align, mask_rate, masked_mean, ramp_up, sharpen, soft_cross_entropy, weak_targets
from .fixmatch import labeled_and_strong_logits, weak_logits
from .registry import Batch, accuracy, register_method
from .supervised import cross_entropy


@dataclass
class UDAOptions:
    weight: float = 1.0
    threshold: float = 0.8
    temperature: float = 0.4
    dist_align: bool = False
    warmup: float = 0.0
    tsa: str = "none"  # none | linear | exp | log


def tsa_threshold(schedule: str, progress: float, num_classes: int) -> float:
    """eta_t: labelled images predicted above this probability are left out of the CE term."""
    if schedule == "none":
        return 1.0
    alphas = {"linear": progress, "exp": math.exp((progress - 1.0) * 5.0), "log": 1.0 - math.exp(-progress * 5.0)}
    if schedule not in alphas:
        raise ConfigError(f"method.tsa: '{schedule}' is not one of none, linear, exp, log")
    return alphas[schedule] * (1.0 - 1.0 / num_classes) + 1.0 / num_classes


def tsa_cross_entropy(logits: torch.Tensor, y: torch.Tensor, eta: float) -> torch.Tensor:
    """Mean CE over the labelled images whose true-class probability is below eta. (B, K), (B,) -> scalar"""
    if eta >= 1.0:
        return cross_entropy(logits, y)
    with torch.no_grad():
        keep = (F.softmax(logits.float(), dim=1).gather(1, y[:, None]).squeeze(1) < eta).float()  # (B,)
    per_sample = F.cross_entropy(logits.float(), y, reduction="none")
    return (per_sample * keep).sum() / keep.sum().clamp_min(1.0)


@register_method(
    "uda",
    options=UDAOptions,
    uses_unlabeled=lambda o: True,
    mu=7,
    x_u_is_target=True,
    make_state=make_dist_align,
    description="sharpened weak-view predictions as soft targets for RandAugment views (Xie et al. 2020)",
)
def uda_step(model: nn.Module, batch: Batch, opts: UDAOptions) -> dict[str, torch.Tensor]:
    probs_weak = weak_targets(
        weak_logits(model, batch.x_u), batch.state, dist_align=opts.dist_align, gather=batch.gather
    )  # (Bu, K)
    logits_l, logits_s = labeled_and_strong_logits(model, batch, probs_weak)
    ce = tsa_cross_entropy(logits_l, batch.y_l, tsa_threshold(opts.tsa, batch.progress, logits_l.shape[1]))
    mask = (probs_weak.max(dim=1).values >= opts.threshold).float()
    unsup = masked_mean(soft_cross_entropy(logits_s, sharpen(probs_weak, opts.temperature)), mask)
    loss = ce + opts.weight * ramp_up(batch.progress, opts.warmup) * unsup
    return {
        "loss": loss,
        "ce": ce.detach(),
        "unsup": unsup,
        "mask": mask_rate(mask),
        "train_acc": accuracy(logits_l, batch.y_l),
    }
