"""Consistency training with supervision (the fourth source post): a noisy student matches a teacher.

The teacher (trained on clean images, frozen, in eval mode) predicts on the clean view of each
image; the student predicts on a RandAugment-noised view of the same crop and is trained on

    loss = ce_weight * CE(y, student) + kl_weight * KL(softmax(t / T) || softmax(s / T)) [* T^2]

The post's setting is the default: the two terms averaged (0.5 each), T = 10, no T^2 factor
(Hinton et al.'s T^2 keeps the soft term's gradient scale independent of T; `t2_scaling=true`).
With `on="both"`, unlabelled images add KL terms only (noisy-student style).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .registry import Batch, accuracy, register_method
from .supervised import cross_entropy


@dataclass
class ConsistencyOptions:
    temperature: float = 10.0
    ce_weight: float = 0.5
    kl_weight: float = 0.5
    t2_scaling: bool = False
    student_view: str = "strong"  # strong (RandAugment on the teacher's crop) | weak (plain distillation)
    on: str = "labeled"  # labeled | both (unlabelled images add KL terms)


def softened_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample KL(softmax(t/T) || softmax(s/T)) in float32, as Keras' KLDivergence computes it. -> (B,)"""
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)


def consistency_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float, t2_scaling: bool
) -> torch.Tensor:
    kl = softened_kl(teacher_logits.detach(), student_logits, temperature).mean()
    return kl * temperature**2 if t2_scaling else kl


@register_method(
    "consistency",
    options=ConsistencyOptions,
    uses_unlabeled=lambda o: o.on == "both",
    needs_teacher=True,
    unsup_term="kl",
    description="noisy student: CE + softened KL to a frozen teacher's clean-view predictions",
)
def consistency_step(model: nn.Module, batch: Batch, opts: ConsistencyOptions) -> dict[str, torch.Tensor]:
    if batch.teacher is None:
        raise ConfigError("method 'consistency' needs a teacher: set `teacher` to a trained run directory")
    if opts.on not in ("labeled", "both"):
        raise ConfigError(f"method.on: '{opts.on}' is not one of labeled, both")
    if opts.student_view not in ("strong", "weak"):
        raise ConfigError(f"method.student_view: '{opts.student_view}' is not one of strong, weak")
    if opts.student_view == "strong" and batch.strong is None:
        raise ConfigError("method 'consistency' with student_view=strong needs the engine's augmenter")
    clean = batch.x_l if opts.on == "labeled" else torch.cat([batch.x_l, batch.x_u])  # (B [+ Bu], C, H, W)
    with torch.no_grad():
        teacher_logits = batch.teacher(clean)  # (B [+ Bu], K), constant target
    noisy = batch.strong(clean) if opts.student_view == "strong" else clean
    student_logits = model(noisy)
    n_l = len(batch.y_l)
    ce = cross_entropy(student_logits[:n_l], batch.y_l)
    kl = consistency_loss(student_logits, teacher_logits, temperature=opts.temperature, t2_scaling=opts.t2_scaling)
    loss = opts.ce_weight * ce + opts.kl_weight * kl
    return {
        "loss": loss,
        "ce": ce.detach(),
        "kl": kl,
        "train_acc": accuracy(student_logits[:n_l], batch.y_l),
        "teacher_agree": (student_logits.detach().argmax(1) == teacher_logits.argmax(1)).float().mean(),
    }
