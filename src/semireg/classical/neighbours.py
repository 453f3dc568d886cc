"""k nearest neighbours by blocks of exact distances: a (block, N) distance matrix at a time, so
that memory stays at block * N floats whatever N is."""

from __future__ import annotations

import torch


@torch.no_grad()
def nearest(query: torch.Tensor, reference: torch.Tensor, k: int, block: int = 1024) -> torch.Tensor:
    """(Nq, k) indices into `reference` (N, D) of each query row's k nearest rows (Euclidean), nearest first."""
    k = min(k, len(reference))
    ref_sq = (reference * reference).sum(1)  # (N,)
    out = []
    for start in range(0, len(query), block):
        q = query[start : start + block]  # (b, D)
        # squared distances up to each query's own |q|^2, which does not change its ranking
        dist = ref_sq[None, :] - 2.0 * (q @ reference.T)  # (b, N)
        out.append(dist.topk(k, dim=1, largest=False).indices)
    return torch.cat(out) if out else torch.empty(0, k, dtype=torch.long)
