"""An in-memory data set: float images in [0, 1] and integer labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DataError


@dataclass
class ArrayDataset:
    """Train and (optional) official test arrays. x: (N, C, H, W) or (N, D) float32; y: (N,) int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    num_classes: int
    name: str
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        check_labels(self.y_train, self.num_classes, f"{self.name} train labels")
        if self.y_test is not None:
            check_labels(self.y_test, self.num_classes, f"{self.name} test labels")
        if len(self.x_train) != len(self.y_train):
            raise DataError(f"{self.name}: {len(self.x_train)} training inputs but {len(self.y_train)} labels")


def check_labels(y: torch.Tensor, num_classes: int, what: str) -> None:
    if y.numel() == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(f"{what}: labels must lie in [0, {num_classes}), found {lo}..{hi}")


def _numeric(x: np.ndarray | torch.Tensor, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":  # strings, objects, complex, dates: not pixels or labels
        raise DataError(f"{what}: expected numbers, got an array of {arr.dtype}")
    return torch.as_tensor(arr)


def as_images(x: np.ndarray | torch.Tensor, what: str = "x") -> torch.Tensor:
    """Float32 tensor from an array shaped (N, C, H, W), (N, H, W) or (N, D).

    uint8 input is scaled to [0, 1]; float input is kept as it is (the user's own scale).
    """
    t = _numeric(x, what)
    if t.ndim not in (2, 3, 4):
        raise DataError(f"{what}: expected shape (N, C, H, W), (N, H, W) or (N, D), got {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif not t.is_floating_point():
        t = t.float()
    t = t.float()
    if t.ndim == 3:
        t = t.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
    return t.contiguous()


def as_labels(y: np.ndarray | torch.Tensor, what: str = "y") -> torch.Tensor:
    t = _numeric(y, what)
    if t.ndim != 1:
        raise DataError(f"{what}: expected shape (N,), got {tuple(t.shape)}")
    if t.is_floating_point():
        if not torch.equal(t, t.round()):
            raise DataError(f"{what}: labels must be integers")
    return t.long()
