"""FlexMatch (Zhang et al. 2021): FixMatch with curriculum pseudo-labelling, a threshold per class.

Each unlabelled image remembers the class it was last confidently (>= threshold) predicted as.
A class's learning status sigma_c is how many images are remembered as c, over the largest such
count (with threshold warm-up, the count of images never yet confident takes part in that maximum,
so thresholds start low and rise as the model commits). The threshold of class c is
threshold * M(sigma_c), with the convex mapping M(x) = x / (2 - x) (or linear, M(x) = x).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .common import DistAlign, mask_rate, ramp_up, weak_targets
from .fixmatch import labeled_and_strong_logits, pseudo_label_loss, weak_logits
from .registry import Batch, accuracy, register_method
from .supervised import cross_entropy


@dataclass
class FlexMatchOptions:
    weight: float = 1.0
    threshold: float = 0.95  # the upper bound of every class's threshold
    temperature: float = 0.5
    hard_labels: bool = True
    dist_align: bool = False
    warmup: float = 0.0
    threshold_warmup: bool = True  # count never-confident images when normalising the learning status
    mapping: str = "convex"  # convex (x / (2 - x)) | linear


class LearningStatus(nn.Module):
    """Per-image last confident class (-1: none yet) and the per-class learning status derived from it."""

    def __init__(self, num_classes: int, num_unlabeled: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("selected", torch.full((num_unlabeled,), -1, dtype=torch.long))
        self.register_buffer("status", torch.zeros(num_classes))

    @torch.no_grad()
    def refresh(self, threshold_warmup: bool) -> torch.Tensor:
        """sigma (K,) from the remembered labels; kept unchanged while no image has been confident."""
        counts = torch.bincount(self.selected + 1, minlength=self.num_classes + 1).float()  # [unused, c_0..c_K-1]
        denom = counts.max() if threshold_warmup else counts[1:].max()
        fresh = counts[1:] / denom.clamp_min(1.0)
        any_selected = counts[0] < len(self.selected)  # a 0-d tensor: no host sync
        self.status.copy_(torch.where(any_selected, fresh, self.status))
        return self.status

    @torch.no_grad()
    def remember(self, idx: torch.Tensor, confidence: torch.Tensor, labels: torch.Tensor, threshold: float) -> None:
        """idx, confidence, labels: (B,) of the global batch (gathered across ranks), so every rank remembers the same."""
        over = confidence > threshold
        self.selected[idx] = torch.where(over, labels, self.selected[idx])


def make_flexmatch_state(opts: FlexMatchOptions, num_classes: int, num_unlabeled: int) -> nn.Module:
    state = nn.ModuleDict({"status": LearningStatus(num_classes, num_unlabeled)})
    if opts.dist_align:
        state["dist_align"] = DistAlign(num_classes)
    return state


def class_thresholds(status: torch.Tensor, threshold: float, mapping: str) -> torch.Tensor:
    """(K,) learning status -> (K,) per-class confidence thresholds."""
    if mapping == "convex":
        return threshold * status / (2.0 - status)
    if mapping == "linear":
        return threshold * status
    raise ConfigError(f"method.mapping: '{mapping}' is not one of convex, linear")


@register_method(
    "flexmatch",
    options=FlexMatchOptions,
    uses_unlabeled=lambda o: True,
    mu=7,
    x_u_is_target=True,
    make_state=make_flexmatch_state,
    description="FixMatch with per-class thresholds from each class's learning status (Zhang et al. 2021)",
)
def flexmatch_step(model: nn.Module, batch: Batch, opts: FlexMatchOptions) -> dict[str, torch.Tensor]:
    if batch.idx_u is None or batch.state is None:
        raise ConfigError("flexmatch needs the unlabelled images' indices and its state (the engine passes both)")
    status: LearningStatus = batch.state["status"]
    probs_weak = weak_targets(
        weak_logits(model, batch.x_u), batch.state, dist_align=opts.dist_align, gather=batch.gather
    )  # (Bu, K)
    confidence, labels = probs_weak.max(dim=1)  # (Bu,), (Bu,)
    thresholds = class_thresholds(status.refresh(opts.threshold_warmup), opts.threshold, opts.mapping)  # (K,)
    mask = (confidence >= thresholds[labels]).float()
    status.remember(batch.gather(batch.idx_u), batch.gather(confidence), batch.gather(labels), opts.threshold)
    logits_l, logits_s = labeled_and_strong_logits(model, batch, probs_weak)
    ce = cross_entropy(logits_l, batch.y_l)
    unsup = pseudo_label_loss(logits_s, probs_weak, mask, hard_labels=opts.hard_labels, temperature=opts.temperature)
    loss = ce + opts.weight * ramp_up(batch.progress, opts.warmup) * unsup
    return {
        "loss": loss,
        "ce": ce.detach(),
        "unsup": unsup,
        "mask": mask_rate(mask),
        "threshold_mean": thresholds.mean(),
        "train_acc": accuracy(logits_l, batch.y_l),
    }
