"""An in-memory data set: float inputs and integer labels, and the checks that turn a user's arrays
into them with one clear error (or a one-line notice) instead of a failure deep inside training."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import DataError

CHANNEL_COUNTS = (1, 3, 4)  # what a last axis of image channels looks like: gray, RGB, RGBA


@dataclass
class ArrayDataset:
    """Train and (optional) official test arrays. x: (N, C, H, W) or (N, D) float32; y: (N,) int64.

    `x_unlabeled` is a pile of inputs without labels (an `unlabeled/` folder, CSV rows with an empty
    label): it joins the unlabelled set of every split. `feature_stats` holds the mean and std that
    standardised vector inputs (a CSV), so that predictions on new rows use the same scale."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    num_classes: int
    name: str
    class_names: list[str] | None = None
    x_unlabeled: torch.Tensor | None = None
    feature_stats: dict[str, list[float]] | None = None

    def __post_init__(self) -> None:
        check_labels(self.y_train, self.num_classes, f"{self.name} train labels")
        if self.y_test is not None:
            check_labels(self.y_test, self.num_classes, f"{self.name} test labels")
        if len(self.x_train) != len(self.y_train):
            raise DataError(f"{self.name}: {len(self.x_train)} training inputs but {len(self.y_train)} labels")
        if self.x_unlabeled is not None and self.x_unlabeled.shape[1:] != self.x_train.shape[1:]:
            raise DataError(
                f"{self.name}: unlabelled inputs of shape {tuple(self.x_unlabeled.shape[1:])}, "
                f"labelled ones {tuple(self.x_train.shape[1:])}"
            )


def check_labels(y: torch.Tensor, num_classes: int, what: str) -> None:
    if y.numel() == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        row = int(((y < 0) | (y >= num_classes)).nonzero()[0, 0])
        raise DataError(
            f"{what}: labels must lie in [0, {num_classes}), found {lo}..{hi} (first outside: row {row}, {int(y[row])})"
        )


def check_classes_present(
    y: torch.Tensor, num_classes: int, what: str, why: str = "", names: Sequence[str] | None = None
) -> None:
    """Every class needs at least one labelled sample: a class without one cannot be learnt by name,
    and usually means the class count was inferred wrong."""
    counts = torch.bincount(y, minlength=num_classes)[:num_classes]
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        label = lambda c: repr(names[c]) if names else str(c)
        seen = ", ".join(label(c) for c in (counts > 0).nonzero().flatten().tolist()[:12])
        raise DataError(
            f"{what}: class {label(empty[0])} of {num_classes}{f' ({why})' if why else ''} has no labelled "
            f"sample ({len(empty)} empty; labels seen: {seen}); every class needs at least one label"
        )


def check_finite(t: torch.Tensor, what: str) -> None:
    """NaN or inf anywhere in the inputs: one error naming the first bad row (and column, for vectors)."""
    if not t.is_floating_point() or t.numel() == 0:
        return
    bad = ~torch.isfinite(t)
    if not bool(bad.any()):
        return
    row = int(bad.flatten(1).any(1).nonzero()[0, 0]) if t.ndim > 1 else int(bad.nonzero()[0, 0])
    col = f", column {int(bad[row].nonzero()[0, 0])}" if t.ndim == 2 else ""
    value = t[row].flatten()[bad[row].flatten()][0].item()
    raise DataError(
        f"{what}: {value} in row {row}{col} ({int(bad.flatten(1).any(1).sum()) if t.ndim > 1 else int(bad.sum())} "
        "rows with NaN or inf); fill or drop them before training"
    )


def notice(message: str) -> None:
    print(f"semireg: {message}", file=sys.stderr)


def _numeric(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":  # strings, objects, complex, dates: not pixels
        raise DataError(f"{what}: expected numbers, got an array of {arr.dtype}")
    return torch.as_tensor(arr)


def looks_channels_last(shape: Sequence[int]) -> bool:
    """(N, H, W, C) with C a channel count and H not one: how PIL, NumPy and TensorFlow keep images."""
    return len(shape) == 4 and shape[3] in CHANNEL_COUNTS and shape[1] not in CHANNEL_COUNTS


def pixels_to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (as data sets of images are held in memory, a quarter of float32's bytes) ->
    float32 in [0, 1], per batch where they are used; any other tensor as it is."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def as_images(x: Any, what: str = "x") -> torch.Tensor:
    """Float32 tensor from an array shaped (N, C, H, W), (N, H, W, C), (N, H, W) or (N, D).

    uint8 input is scaled to [0, 1]; float input is kept as it is (the user's own scale). (N, H, W, C)
    is recognised when C is 1, 3 or 4 and H is not, and said in a one-line notice. NaN or inf is an
    error naming the first bad row.
    """
    t = _numeric(x, what)
    if t.ndim not in (2, 3, 4):
        raise DataError(f"{what}: expected shape (N, C, H, W), (N, H, W, C), (N, H, W) or (N, D), got {tuple(t.shape)}")
    if looks_channels_last(tuple(t.shape)):
        notice(
            f"{what}: shape {tuple(t.shape)} read as (N, H, W, C) images -> (N, C, H, W) = "
            f"{(t.shape[0], t.shape[3], t.shape[1], t.shape[2])}"
        )
        t = t.permute(0, 3, 1, 2)
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    t = t.float()
    check_finite(t, what)
    if t.ndim == 3:
        t = t.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
    return t.contiguous()


def encode_labels(
    y: Any, what: str = "y", classes: Sequence[Any] | None = None
) -> tuple[torch.Tensor, list[str] | None]:
    """(N,) int64 class indices, and the class names when the labels are not already indices.

    Integers (or integral floats) are class indices 0..K-1. Labels of any other hashable type
    (strings, booleans, objects) are classes by name, numbered in sorted order; `classes` (the names
    of a training set) maps another set's labels the same way, and a label outside it is an error.
    """
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y, dtype=object if not hasattr(y, "dtype") and _mixed(y) else None)
    if arr.ndim != 1:
        raise DataError(f"{what}: expected shape (N,), got {tuple(arr.shape)}")
    if classes is None and arr.dtype.kind in "iuf":
        return _indices(arr, what), None
    values = [v.item() if isinstance(v, np.generic) else v for v in arr.tolist()]
    for row, v in enumerate(values):
        if v is None or (isinstance(v, float) and v != v):
            raise DataError(f"{what}: row {row} has no label ({v!r}); give unlabelled samples as unlabelled inputs")
    names = [str(c) for c in classes] if classes is not None else sorted({str(v) for v in values})
    index = {name: i for i, name in enumerate(names)}
    out = np.empty(len(values), dtype=np.int64)
    for row, v in enumerate(values):
        key = str(v)
        if key not in index:
            raise DataError(
                f"{what}: row {row} has label {v!r}, not one of the training classes ({', '.join(names[:12])})"
            )
        out[row] = index[key]
    return torch.from_numpy(out), names


def _mixed(y: Any) -> bool:
    """A list mixing numbers and strings would become an array of strings; keep the objects."""
    try:
        kinds = {type(v) for v in y}
    except TypeError:
        return False
    return len(kinds) > 1


def _indices(arr: np.ndarray, what: str) -> torch.Tensor:
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            raise DataError(f"{what}: row {int(np.argmin(finite))} has no label ({arr[np.argmin(finite)]})")
        if not np.array_equal(arr, np.round(arr)):
            row = int(np.argmax(arr != np.round(arr)))
            raise DataError(f"{what}: labels must be class indices (integers); row {row} is {arr[row]}")
    if arr.size and arr.dtype.kind == "f" and float(np.abs(arr).max()) >= 2**62:
        row = int(np.argmax(np.abs(arr) >= 2**62))
        raise DataError(f"{what}: labels must be class indices 0..K-1; row {row} is {arr[row]}")
    t = torch.from_numpy(arr.astype(np.int64))
    if t.numel() and int(t.min()) < 0:
        row = int((t < 0).nonzero()[0, 0])
        raise DataError(f"{what}: labels must be class indices 0..K-1; row {row} is {int(t[row])}")
    return t


def as_labels(y: Any, what: str = "y") -> torch.Tensor:
    """Integer class indices only (files and runs that store indices); see `encode_labels` for names."""
    t = _numeric(y, what)
    if t.ndim != 1:
        raise DataError(f"{what}: expected shape (N,), got {tuple(t.shape)}")
    return _indices(t.numpy(), what)


def infer_num_classes(
    y: torch.Tensor,
    names: list[str] | None,
    given: int | None,
    model_width: int | None,
    eval_labels: Sequence[torch.Tensor] = (),
) -> tuple[int, str]:
    """(class count, why): given > class names > the model's output width > the largest label seen."""
    if given:
        return int(given), "num_classes given"
    if names is not None:
        return len(names), f"{len(names)} distinct labels"
    if model_width is not None:
        return model_width, "the model's output width"
    top = max([int(y.max())] + [int(t.max()) for t in eval_labels if t.numel()]) if y.numel() else 0
    return top + 1, f"the largest label seen is {top}"
