"""Pieces the semi-supervised methods share: ramp-ups, sharpening, confidence masks, soft targets,
distribution alignment. Each is a small pure function (or a module of buffers for running state).

Targets are always computed without a graph: a method's loss differentiates through its
predictions only, never through the predictions it learns from.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def ramp_up(progress: float, warmup: float) -> float:
    """Linear ramp of an unsupervised weight over the first `warmup` fraction of training (USB's
    `unsup_warmup`); 1 from there on, and always 1 when warmup is 0."""
    if warmup <= 0:
        return 1.0
    return min(1.0, max(0.0, progress / warmup))


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^(1/T), renormalised per row. (B, K) -> (B, K)"""
    p = probs.pow(1.0 / temperature)
    return p / p.sum(dim=1, keepdim=True)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy against probability targets, in float32. (B, K), (B, K) -> (B,)"""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1)


def masked_mean(per_sample: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the whole batch of per_sample * mask (FixMatch's normalisation: masked samples
    count in the denominator, so the term's scale follows the fraction that passed)."""
    return (per_sample * mask).mean()


def marginal_kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(mean prediction || uniform) = log K - H(mean_b p_b): 0 when the batch's predictions are
    spread evenly over the classes, log K when they all pick one. (B, K) -> scalar

    IMSAT's marginal-entropy term (Hu et al. 2017): entropy minimisation alone is as happy with two
    clusters merged into one class as with the right ten, a merge that float summation order is
    enough to tip; this term makes a merge cost log-probability mass.
    """
    mean_p = F.softmax(logits.float(), dim=1).mean(dim=0)  # (K,)
    return (mean_p * (mean_p.clamp_min(1e-12).log() + math.log(mean_p.numel()))).sum()


def mse_of_probs(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error between softmax(logits) and target probabilities, averaged over
    classes (as USB's `consistency_loss(..., 'mse')`, which its lambda_u values assume). (B, K), (B, K) -> (B,)"""
    return (F.softmax(logits.float(), dim=1) - target_probs).pow(2).mean(dim=1)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class DistAlign(nn.Module):
    """Distribution alignment (ReMixMatch): scale predictions by p_target / p_model, where p_model
    is an EMA of the mean prediction on unlabelled images, and renormalise. p_target is uniform."""

    def __init__(self, num_classes: int, momentum: float = 0.999) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("p_model", torch.full((num_classes,), 1.0 / num_classes))

    @torch.no_grad()
    def forward(self, probs: torch.Tensor, gather: Callable[[torch.Tensor], torch.Tensor] = _identity) -> torch.Tensor:
        """probs (B, K) from the weak view -> aligned probs (B, K); updates p_model from the global batch."""
        self.p_model.lerp_(gather(probs).mean(dim=0), 1.0 - self.momentum)
        target = torch.full_like(self.p_model, 1.0 / len(self.p_model))
        aligned = probs * (target / self.p_model.clamp_min(1e-12))
        return aligned / aligned.sum(dim=1, keepdim=True)


def make_dist_align(opts, num_classes: int, num_unlabeled: int) -> nn.Module:
    """State for methods whose only running state is optional distribution alignment."""
    state = nn.ModuleDict()
    if getattr(opts, "dist_align", False):
        state["dist_align"] = DistAlign(num_classes)
    return state


@torch.no_grad()
def weak_targets(
    logits_weak: torch.Tensor,
    state: nn.Module | None,
    *,
    dist_align: bool,
    gather: Callable[[torch.Tensor], torch.Tensor] = _identity,
) -> torch.Tensor:
    """Class probabilities of the weak view, distribution-aligned if asked. (B, K) -> (B, K), no graph."""
    probs = F.softmax(logits_weak.detach().float(), dim=1)
    if dist_align:
        probs = state["dist_align"](probs, gather)
    return probs


def mask_rate(mask: torch.Tensor) -> torch.Tensor:
    """Fraction of unlabelled samples that passed (a logged diagnostic)."""
    return mask.detach().float().mean()


def joint_logits(model: nn.Module, x_l: torch.Tensor, x_other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward with a graph over [x_l; x_other] (BatchNorm sees both as one batch, as in the
    papers) -> (logits of x_l (B, K), logits of x_other (Bo, K))."""
    logits = model(torch.cat([x_l, x_other]))
    return logits[: len(x_l)], logits[len(x_l) :]
