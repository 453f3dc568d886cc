"""Label spreading (Zhou et al. 2004) on a k-nearest-neighbour graph, in torch.

    W = symmetric kNN connectivity (no self loops), S = D^-1/2 W D^-1/2
    F <- alpha * S F + (1 - alpha) * Y          (Y: one-hot labels, zero rows for unlabelled)

until F changes by less than `tol` or after `iterations`; each row of F normalised is that row's
label distribution. A new input gets the mean distribution of its k nearest training rows (as
scikit-learn's LabelSpreading(kernel="knn") predicts). The graph is a sparse (N, N) matrix with at
most 2k entries a row (kept as index pairs), built from blocks of exact distances: 100,000 rows fit in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .neighbours import nearest
from .registry import register_classical, rows


@dataclass
class LabelSpreadingOptions:
    k: int = 10  # neighbours of each row in the graph and in prediction
    alpha: float = 0.2  # share each step takes from the neighbours (scikit-learn's default)
    iterations: int = 30  # at most; each reaches one hop further
    tol: float = 1e-3  # stop when no row of F moved more than this (summed over the row) and none is newly reached


class NeighbourVote(nn.Module):
    """Logits of the mean label distribution of an input's k nearest training rows."""

    def __init__(self, reference: torch.Tensor, distributions: torch.Tensor, k: int) -> None:
        super().__init__()
        self.register_buffer("reference", reference)  # (N, D)
        self.register_buffer("distributions", distributions)  # (N, K), rows sum to 1
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = x.reshape(len(x), -1).to(self.reference.dtype)
        idx = nearest(query, self.reference, self.k)  # (B, k)
        probs = self.distributions[idx].mean(dim=1)  # (B, K)
        return probs.clamp_min(1e-12).log()


class Graph:
    """S = D^-1/2 W D^-1/2 of the symmetrised kNN graph (W = max(W_knn, W_knn^T), 0/1, no self
    loops) as its nonzero entries: S[i, j] = weight for each (i, j) in (rows, cols)."""

    def __init__(self, x: torch.Tensor, k: int) -> None:
        n = len(x)
        idx = nearest(x, x, k + 1)[:, 1:]  # (N, k): each row's neighbours, itself left out
        i = torch.arange(n).repeat_interleave(idx.shape[1])
        j = idx.reshape(-1)
        # an edge found from both ends counts once: unique over the pair code i * n + j
        code = torch.unique(torch.cat([i * n + j, j * n + i]))  # (E,)
        self.rows, self.cols, self.n = code // n, code % n, n
        degree = torch.zeros(n).index_add_(0, self.rows, torch.ones(len(code)))  # (N,)
        scale = degree.clamp_min(1e-12).rsqrt()
        self.weight = scale[self.rows] * scale[self.cols]  # (E,)

    def __matmul__(self, f: torch.Tensor) -> torch.Tensor:
        """S @ f for f (N, K)."""
        return torch.zeros_like(f).index_add_(0, self.rows, self.weight[:, None] * f[self.cols])


@register_classical(
    "labelspreading",
    options=LabelSpreadingOptions,
    load=lambda state, opts: NeighbourVote(state["reference"], state["distributions"], opts.k).eval(),
    description="label spreading on a k-nearest-neighbour graph (Zhou et al. 2004), on torch",
)
def fit_label_spreading(x_l, y_l, x_u, num_classes: int, opts: LabelSpreadingOptions) -> nn.Module:
    x = rows(x_l if x_u is None else torch.cat([x_l, x_u]))  # (N, D)
    s = Graph(x, opts.k)
    y = torch.zeros(len(x), num_classes)
    y[: len(x_l)] = F.one_hot(y_l.long(), num_classes).float()  # (N, K)
    f = y.clone()
    reached = int((f > 0).any(dim=1).sum())
    for _ in range(opts.iterations):
        new = opts.alpha * (s @ f) + (1 - opts.alpha) * y
        moved = float((new - f).abs().sum(dim=1).max())
        now = int((new > 0).any(dim=1).sum())
        f = new
        # a label's mass shrinks by alpha a hop, so "F barely moved" comes before it has reached rows
        # a few hops out: stop only once no row is newly reached as well
        if moved < opts.tol and now == reached:
            break
        reached = now
    total = f.sum(dim=1, keepdim=True)
    # a row no label reached (a component of the graph without labels) gets the uniform distribution
    dist = torch.where(total > 0, f / total.clamp_min(1e-30), torch.full_like(f, 1.0 / num_classes))
    return NeighbourVote(x, dist, opts.k).eval()
