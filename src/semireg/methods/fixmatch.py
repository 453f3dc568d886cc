"""FixMatch (Sohn et al. 2020): confident weak-view predictions become hard labels for the strong view.

    loss = CE(y_l, f(x_l)) + weight * mean_b[ max p_w >= threshold ] * CE(argmax p_w, f(strong(x_u)))

p_w = softmax(f(weak(x_u))) comes from a pass without a graph (it is a target, never trained
through), so its activations are not kept; the labelled batch and the strong view share one
forward. `hard_labels=false` uses sharpened soft targets (temperature) instead of the argmax;
`dist_align` aligns p_w to a uniform class prior first (ReMixMatch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .common import (
    joint_logits,
    make_dist_align,
    mask_rate,
    masked_mean,
    ramp_up,
    sharpen,
    soft_cross_entropy,
    weak_targets,
)
from .registry import Batch, accuracy, register_method
from .supervised import cross_entropy


@dataclass
class FixMatchOptions:
    weight: float = 1.0  # lambda_u
    threshold: float = 0.95  # confidence a weak-view prediction needs to become a label
    temperature: float = 0.5  # sharpening of soft targets (hard_labels=false only)
    hard_labels: bool = True
    dist_align: bool = False
    warmup: float = 0.0  # fraction of training over which the unsupervised weight ramps up linearly


def pseudo_label_loss(
    logits_strong: torch.Tensor, probs_weak: torch.Tensor, mask: torch.Tensor, *, hard_labels: bool, temperature: float
) -> torch.Tensor:
    """Masked cross-entropy of the strong view against the weak view's labels (hard) or sharpened
    probabilities (soft). logits_strong (B, K), probs_weak (B, K) constant, mask (B,) -> scalar."""
    if hard_labels:
        per_sample = F.cross_entropy(logits_strong.float(), probs_weak.argmax(dim=1), reduction="none")
    else:
        per_sample = soft_cross_entropy(logits_strong, sharpen(probs_weak, temperature))
    return masked_mean(per_sample, mask)


def labeled_and_strong_logits(
    model: nn.Module, batch: Batch, probs_weak: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward with a graph over [x_l; strong(x_u)] -> (logits_l (B, K), logits_strong (Bu, K)).
    probs_weak (Bu, K): the weak view's predictions, whose classes the strong view may use (vectors)."""
    if batch.strong is None or batch.x_u is None:
        raise ConfigError("this method needs unlabelled images and the engine's strong augmentation")
    return joint_logits(model, batch.x_l, batch.strong(batch.x_u, probs_weak.argmax(dim=1)))


@torch.no_grad()
def weak_logits(model: nn.Module, x_weak: torch.Tensor) -> torch.Tensor:
    """Predictions on the weak view, as targets: no graph, so no activations are kept. (Bu, K)"""
    return model(x_weak)


@register_method(
    "fixmatch",
    options=FixMatchOptions,
    uses_unlabeled=lambda o: True,
    mu=7,
    x_u_is_target=True,
    make_state=make_dist_align,
    description="confident weak-view predictions as hard labels for RandAugment views (Sohn et al. 2020)",
)
def fixmatch_step(model: nn.Module, batch: Batch, opts: FixMatchOptions) -> dict[str, torch.Tensor]:
    probs_weak = weak_targets(
        weak_logits(model, batch.x_u), batch.state, dist_align=opts.dist_align, gather=batch.gather
    )  # (Bu, K)
    logits_l, logits_s = labeled_and_strong_logits(model, batch, probs_weak)
    ce = cross_entropy(logits_l, batch.y_l)
    mask = (probs_weak.max(dim=1).values >= opts.threshold).float()  # (Bu,)
    unsup = pseudo_label_loss(logits_s, probs_weak, mask, hard_labels=opts.hard_labels, temperature=opts.temperature)
    loss = ce + opts.weight * ramp_up(batch.progress, opts.warmup) * unsup
    return {
        "loss": loss,
        "ce": ce.detach(),
        "unsup": unsup,
        "mask": mask_rate(mask),
        "train_acc": accuracy(logits_l, batch.y_l),
    }
