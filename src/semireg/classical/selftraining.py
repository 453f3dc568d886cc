"""Self-training (Yarowsky 1995) around a multinomial logistic regression fitted in torch, with two ways
to choose the rows a refit learns from:

- `selection = "threshold"`, scikit-learn's SelfTrainingClassifier: label the unlabelled rows predicted
  with probability >= `threshold`, keep those labels, refit on them and the labelled rows, until no row
  is added or after `rounds`;
- `selection = "curriculum"` (as curriculum labelling, Cascante-Bonilla et al. 2021, does for networks):
  at round r of `rounds` relabel every unlabelled row with the current model and refit on the labelled
  rows and, of the rows predicted as each class, the most confident share r / rounds. A wrong label is
  not kept once the model changes its mind, and a class predicted with less confidence than the others
  still brings its rows in, where a threshold lets the most confident class take more and more rows.

The logistic regression minimises scikit-learn's objective, C * sum of cross-entropies + |W|^2 / 2
(the bias not penalised), by L-BFGS in float64 on all rows at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .registry import register_classical, rows


@dataclass
class SelfTrainingOptions:
    # "curriculum" chosen on validation rows of eight development tasks (benchmarks/reproduce/vector_defaults.py
    # --methods selftraining --set 'method.selection="..."'): mean 83.5 against 82.6 % for "threshold".
    selection: str = "curriculum"
    threshold: float = 0.75  # scikit-learn's default; "threshold" selection only
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
    description="self-training of a logistic regression on its most confident predictions, relabelled each round",
)
def fit_self_training(x_l, y_l, x_u, num_classes: int, opts: SelfTrainingOptions) -> nn.Module:
    if opts.selection not in SELECTIONS:
        raise ConfigError(f"method.selection: '{opts.selection}' is not one of {', '.join(SELECTIONS)}")
    x_l, y_l = rows(x_l).double(), y_l.long()
    x_u = rows(x_u).double() if x_u is not None else torch.empty(0, x_l.shape[1], dtype=torch.float64)
    return SELECTIONS[opts.selection](x_l, y_l, x_u, num_classes, opts).eval()


def by_threshold(x_l, y_l, x_u, num_classes: int, opts: SelfTrainingOptions) -> Linear:
    """scikit-learn's loop: rows at or above the threshold get a label, kept from then on."""
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
    return model


def most_confident_per_class(confidence: torch.Tensor, label: torch.Tensor, share: float) -> torch.Tensor:
    """(N,) mask of the rows whose confidence is among the top `share` of the rows given the same label."""
    chosen = torch.zeros_like(label, dtype=torch.bool)
    for k in label.unique():
        members = (label == k).nonzero().squeeze(1)  # (N_k,)
        count = max(1, round(share * len(members)))
        chosen[members[confidence[members].topk(count).indices]] = True
    return chosen


def by_curriculum(x_l, y_l, x_u, num_classes: int, opts: SelfTrainingOptions) -> Linear:
    """Every round relabels all unlabelled rows and takes a growing share of each predicted class's."""
    model = logistic_regression(x_l, y_l, num_classes, opts.c, opts.max_iter)
    if len(x_u) == 0:
        return model
    for r in range(1, opts.rounds + 1):
        with torch.no_grad():
            confidence, label = torch.softmax(model(x_u), dim=1).max(dim=1)  # (N_u,), (N_u,)
        chosen = most_confident_per_class(confidence, label, r / opts.rounds)
        x, y = torch.cat([x_l, x_u[chosen]]), torch.cat([y_l, label[chosen]])
        model = logistic_regression(x, y, num_classes, opts.c, opts.max_iter)
    return model


SELECTIONS = {"threshold": by_threshold, "curriculum": by_curriculum}
