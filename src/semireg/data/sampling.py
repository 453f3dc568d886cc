"""Batches drawn by index on the training device: epoch-wise permutations, no per-sample Python."""

from __future__ import annotations

from typing import Any

import torch


class IndexSampler:
    """Yields index batches (on `device`) that walk through random permutations of range(n).

    A batch larger than n, or one straddling an epoch boundary, continues into the next
    permutation, so every index is seen once per epoch. The state (generator, current
    permutation, position) round-trips through `state_dict` for exact resumption.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, device: torch.device | str = "cpu") -> None:
        if n <= 0:
            raise ValueError("IndexSampler needs n > 0")
        self.n, self.batch_size, self.device = n, batch_size, torch.device(device)
        # The generator lives on the CPU: its state is small and portable across devices.
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.empty(0, dtype=torch.long, device=self.device)
        self.pos = 0
        self.epochs = 0

    def _refill(self) -> None:
        fresh = torch.randperm(self.n, generator=self.generator).to(self.device)
        self.perm = torch.cat([self.perm[self.pos :], fresh])
        self.pos = 0
        self.epochs += 1

    def next(self) -> torch.Tensor:
        while len(self.perm) - self.pos < self.batch_size:
            self._refill()
        idx = self.perm[self.pos : self.pos + self.batch_size]  # (B,)
        self.pos += self.batch_size
        return idx

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "perm": self.perm.cpu(),
            "pos": self.pos,
            "epochs": self.epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.perm = state["perm"].to(self.device)
        self.pos = int(state["pos"])
        self.epochs = int(state["epochs"])
