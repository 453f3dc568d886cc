"""Pi-model (Laine & Aila 2017): two stochastic views of an unlabelled image should agree.

    loss = CE(y_l, f(x_l)) + weight * ramp(t) * || softmax f(view_2) - softmax f(view_1) ||^2

view_1 is the batch's weak view, predicted without a graph (the target); view_2 is a second,
independent weak view (the engine's `weak`), predicted with a graph. The noise is the
augmentation and the model's dropout: with neither, both views agree and the term is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .common import joint_logits, marginal_kl_to_uniform, mse_of_probs, ramp_up
from .registry import Batch, DataStats, accuracy, by_input_kind, register_method
from .supervised import cross_entropy

IMAGE_WEIGHT = 10.0  # USB's lambda_u for the Pi-model
# On rows of features the two views differ by Gaussian noise of 5 % of each feature's spread: the
# agreement term is then a penalty on the model's slope at the unlabelled rows, which at the image
# weight merged classes (digits, 50 labels: 61 % on validation rows against 80 % for labels only).
# Chosen on validation rows of digits and wine (benchmarks/reproduce/vector_defaults.py).
VECTOR_WEIGHT = 0.1


@dataclass
class PiModelOptions:
    weight: float | None = None  # None: IMAGE_WEIGHT on images, VECTOR_WEIGHT on vectors (said when filled in)
    warmup: float = 0.4
    # Weight of KL(mean prediction on the unlabelled batch || uniform) (IMSAT's marginal entropy, as
    # VAT's `balance`): agreement is as well met by two clusters merged into one class as by ten;
    # this makes a merge cost. 0 = the paper's Pi-model.
    balance: float = 0.0


def second_view(batch: Batch) -> torch.Tensor:
    """An independent weak view of the unlabelled images. (Bu, ...)"""
    if batch.weak is None or batch.x_u_raw is None:
        raise ConfigError("this method needs the engine's weak augmentation and the raw unlabelled images")
    return batch.weak(batch.x_u_raw)


def agreement_terms(
    model: nn.Module, batch: Batch, target: torch.Tensor, *, weight: float, balance: float = 0.0
) -> dict[str, torch.Tensor]:
    """CE on the labelled batch + weight * squared error between the student's probabilities on a
    second weak view and `target` (Bu, K), the probabilities it should agree with (constant),
    + balance * KL(the student's mean prediction on that view || uniform) when balance > 0."""
    logits_l, logits_u = joint_logits(model, batch.x_l, second_view(batch))
    ce = cross_entropy(logits_l, batch.y_l)
    unsup = mse_of_probs(logits_u, target).mean()
    terms = {"loss": ce + weight * unsup, "ce": ce.detach(), "unsup": unsup, "train_acc": accuracy(logits_l, batch.y_l)}
    if balance > 0:
        marginal = marginal_kl_to_uniform(logits_u)
        terms["loss"] = terms["loss"] + balance * marginal
        terms["balance"] = marginal.detach()
    return terms


def pimodel_data_defaults(opts: PiModelOptions, stats: DataStats) -> tuple[PiModelOptions, str | None]:
    """The agreement weight by input kind when none is given."""
    return by_input_kind(opts, "weight", IMAGE_WEIGHT, VECTOR_WEIGHT, stats)


@register_method(
    "pimodel",
    options=PiModelOptions,
    uses_unlabeled=lambda o: True,
    mu=1,
    x_u_is_target=True,
    data_defaults=pimodel_data_defaults,
    description="agreement between two stochastic views of unlabelled images (Laine & Aila 2017)",
)
def pimodel_step(model: nn.Module, batch: Batch, opts: PiModelOptions) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        target = F.softmax(model(batch.x_u).float(), dim=1)  # (Bu, K)
    weight = opts.weight if opts.weight is not None else IMAGE_WEIGHT  # the engine fills it in from the data first
    return agreement_terms(
        model, batch, target, weight=weight * ramp_up(batch.progress, opts.warmup), balance=opts.balance
    )
