"""Pseudo-label (Lee 2013): the model's own confident predictions on unlabelled images as labels.

    loss = CE(y_l, f(x_l)) + weight * ramp(t) * mean_b[ max p >= threshold ] * CE(argmax p, f(x_u))

One view: the prediction and its label come from the same forward (the label is an argmax, so
it carries no gradient; the prediction does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import joint_logits, make_dist_align, mask_rate, masked_mean, ramp_up, weak_targets
from .registry import Batch, accuracy, register_method
from .supervised import cross_entropy


@dataclass
class PseudoLabelOptions:
    weight: float = 1.0
    threshold: float = 0.95
    dist_align: bool = False
    warmup: float = 0.4  # USB's unsup_warmup: the term ramps in over the first 40% of training


@register_method(
    "pseudolabel",
    options=PseudoLabelOptions,
    uses_unlabeled=lambda o: True,
    mu=1,
    make_state=make_dist_align,
    description="confident own predictions on unlabelled images as hard labels (Lee 2013)",
)
def pseudolabel_step(model: nn.Module, batch: Batch, opts: PseudoLabelOptions) -> dict[str, torch.Tensor]:
    logits_l, logits_u = joint_logits(model, batch.x_l, batch.x_u)
    probs = weak_targets(logits_u, batch.state, dist_align=opts.dist_align, gather=batch.gather)  # (Bu, K), constant
    confidence, labels = probs.max(dim=1)
    mask = (confidence >= opts.threshold).float()
    unsup = masked_mean(F.cross_entropy(logits_u.float(), labels, reduction="none"), mask)
    ce = cross_entropy(logits_l, batch.y_l)
    loss = ce + opts.weight * ramp_up(batch.progress, opts.warmup) * unsup
    return {
        "loss": loss,
        "ce": ce.detach(),
        "unsup": unsup,
        "mask": mask_rate(mask),
        "train_acc": accuracy(logits_l, batch.y_l),
    }
