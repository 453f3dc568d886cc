"""Self-training (Yarowsky 1995; scikit-learn's SelfTrainingClassifier) around a multinomial logistic
regression fitted in torch: fit on the labelled rows, label the unlabelled rows predicted with
probability >= `threshold`, refit on both, until no row is added or after `rounds`.

The logistic regression minimises scikit-learn's objective, C * sum of cross-entropies + |W|^2 / 2
(the bias not penalised), by L-BFGS in float64 on all rows at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_classical, rows


@dataclass
class SelfTrainingOptions:
    threshold: float = 0.75  # scikit-learn's default
    rounds: int = 10
    c: float = 1.0  # inverse L2 strength, as LogisticRegression's C
    max_iter: int = 200  # L-BFGS iterations of each fit


class Linear(nn.Module):
    """Logits of a linear model on the flattened input."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight)  # (K, D)
        self.register_buffer("bias", bias)  # (K,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.reshape(len(x), -1).to(self.weight.dtype), self.weight, self.bias)


def logistic_regression(x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float, max_iter: int) -> Linear:
    """Multinomial logistic regression with scikit-learn's L2 objective; x (N, D) float64, y (N,)."""
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-6)

    def closure():
        opt.zero_grad()
        loss = c * F.cross_entropy(x @ weight.T + bias, y, reduction="sum") + 0.5 * (weight * weight).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return Linear(weight.detach(), bias.detach())


@register_classical(
    "selftraining",
    options=SelfTrainingOptions,
    load=lambda state, opts: Linear(state["weight"], state["bias"]).eval(),
    description="self-training of a logistic regression on its confident predictions (as scikit-learn's)",
)
def fit_self_training(x_l, y_l, x_u, num_classes: int, opts: SelfTrainingOptions) -> nn.Module:
    x_l, y_l = rows(x_l).double(), y_l.long()
    x_u = rows(x_u).double() if x_u is not None else torch.empty(0, x_l.shape[1], dtype=torch.float64)
    taken = torch.zeros(len(x_u), dtype=torch.bool)  # (N_u,) rows given a pseudo-label so far
    pseudo = torch.zeros(len(x_u), dtype=torch.long)
    model = logistic_regression(x_l, y_l, num_classes, opts.c, opts.max_iter)
    for _ in range(opts.rounds):
        if taken.all():
            break
        with torch.no_grad():
            confidence, label = torch.softmax(model(x_u), dim=1).max(dim=1)
        new = ~taken & (confidence >= opts.threshold)
        if not new.any():
            break
        pseudo[new], taken = label[new], taken | new
        x, y = torch.cat([x_l, x_u[taken]]), torch.cat([y_l, pseudo[taken]])
        model = logistic_regression(x, y, num_classes, opts.c, opts.max_iter)
    return model.eval()
