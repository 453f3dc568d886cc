"""Partially labelled data as users hold it: one set of inputs whose unlabelled rows are marked in the
labels (scikit-learn's `y == -1`; `None` or NaN for labels of any type), or a map-style
`torch.utils.data.Dataset` of `(x, y)` pairs. Everything here turns such data into labelled inputs,
their labels and unlabelled inputs, with one error naming the first bad row."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from ..errors import DataError

UNLABELED = -1  # scikit-learn's mark of an unlabelled row (SelfTrainingClassifier, LabelSpreading)


def is_missing(value: Any, marker: Any = UNLABELED) -> bool:
    """A label that marks its row as unlabelled: `marker`, None or NaN."""
    if value is None:
        return True
    if isinstance(value, float) and value != value:
        return True
    if isinstance(value, (bool, np.bool_)):  # True == 1 and False == 0 in Python: never a marker
        return False
    try:
        return bool(value == marker)
    except (TypeError, ValueError):  # an array-valued label: the kind check below names it
        return False


def as_label_array(y: Any, what: str = "y") -> np.ndarray:
    """(N,) numpy labels from a list, numpy array, pandas Series or tensor; numbers stay numbers."""
    if y is None:
        raise DataError(
            f"{what}: a classifier requires y to be passed, but the target y is None "
            "(give every row a label, -1 for an unlabelled one)"
        )
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y) if hasattr(y, "dtype") or hasattr(y, "__array__") else from_sequence(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{what}: expected one label per row, shape (N,); got {tuple(arr.shape)}")
    if arr.dtype == object and len(arr):
        values = [v.item() if isinstance(v, np.generic) else v for v in arr.tolist()]
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
    return arr


def from_sequence(y: Any) -> np.ndarray:
    """A list of labels as numbers when every label is a number (None and NaN allowed: float with
    NaN), else as objects (numpy would turn [1, "a"] into two strings)."""
    values = list(y) if not isinstance(y, np.ndarray) else y
    numbers_only = [v for v in values if v is not None]
    if numbers_only and all(
        isinstance(v, numbers.Number) and not isinstance(v, (bool, np.bool_)) for v in numbers_only
    ):
        if len(numbers_only) == len(values):
            return np.asarray(values)
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def unlabeled_mask(y: np.ndarray, marker: Any = UNLABELED) -> np.ndarray:
    """(N,) bool: the rows whose label is `marker`, None or NaN."""
    if y.dtype.kind in "iu":
        return y == marker if isinstance(marker, numbers.Number) else np.zeros(len(y), dtype=bool)
    if y.dtype.kind == "f":
        return np.isnan(y) | ((y == marker) if isinstance(marker, numbers.Number) else False)
    if y.dtype.kind == "b":
        return np.zeros(len(y), dtype=bool)
    return np.fromiter((is_missing(v, marker) for v in y.tolist()), dtype=bool, count=len(y))


def check_one_label_kind(y: np.ndarray, what: str = "y") -> None:
    """Labels are all numbers or all of one other kind (strings, ...): '3' and 3 would be two classes
    that print the same, and sorting them fails."""
    if y.dtype != object or len(y) == 0:
        return
    first = y[0]
    number = isinstance(first, numbers.Number) and not isinstance(first, bool)
    for row, v in enumerate(y.tolist()):
        if (isinstance(v, numbers.Number) and not isinstance(v, bool)) != number or (
            not number and type(v) is not type(first)
        ):
            raise DataError(
                f"{what}: mixed label types: row 0 is {first!r} ({type(first).__name__}), "
                f"row {row} is {v!r} ({type(v).__name__}); give every label the same type"
            )


def split_rows(x: Any, y: Any, marker: Any = UNLABELED, what: str = "y") -> tuple[Any, np.ndarray, Any | None]:
    """(labelled inputs, their labels, unlabelled inputs or None) from inputs whose unlabelled rows
    are marked in `y`. Inputs are indexed as they come (numpy, tensor), so no copy of a large set
    is made before its type is known."""
    labels = as_label_array(y, what)
    if len(labels) != len(x):
        raise DataError(f"{what}: {len(labels)} labels for {len(x)} inputs")
    missing = unlabeled_mask(labels, marker)
    # Checked here, on every row, so that an error names the user's own row (not a row of the labelled part).
    check_rows(x, labels, missing, what)
    if missing.all():
        raise DataError(
            f"{what}: every row is unlabelled ({len(labels)} rows marked {marker!r}, None or NaN); "
            "at least one labelled row per class is needed"
        )
    kept = labels[~missing]
    check_one_label_kind(kept, what)
    take = lambda rows: x[torch.from_numpy(rows)] if isinstance(x, torch.Tensor) else np.asarray(x)[rows]
    x_u = take(np.flatnonzero(missing)) if missing.any() else None
    return take(np.flatnonzero(~missing)), kept, x_u


def check_rows(x: Any, labels: np.ndarray, missing: np.ndarray, what: str) -> None:
    """NaN or inf in any input row, and a negative integer label that is not the unlabelled mark: one
    error naming the first such row of the whole set."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.dtype.kind == "f" and arr.size:
        bad = ~np.isfinite(arr.reshape(len(arr), -1))  # (N, features)
        if bad.any():
            row = int(bad.any(1).argmax())
            column = f", column {int(bad[row].argmax())}" if arr.ndim == 2 else ""
            value = arr.reshape(len(arr), -1)[row][bad[row]][0]
            raise DataError(
                f"{what.removesuffix(' y')} x: {value} in row {row}{column} ({int(bad.any(1).sum())} rows "
                "with NaN or inf); fill or drop them before training"
            )
    if labels.dtype.kind in "iu" and ((labels < 0) & ~missing).any():
        row = int(((labels < 0) & ~missing).argmax())
        raise DataError(
            f"{what}: labels must be class indices 0..K-1 (-1 for an unlabelled row); row {row} is {int(labels[row])}"
        )


def is_map_dataset(data: Any) -> bool:
    """A map-style dataset (len and integer indexing) that is not itself a pair or an array."""
    return (
        isinstance(data, torch.utils.data.Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__"))
    ) and not isinstance(data, (tuple, list, np.ndarray, torch.Tensor, dict, str))


def pairs_of_dataset(dataset: Any, what: str = "dataset") -> tuple[torch.Tensor, np.ndarray]:
    """Inputs (N, ...) and labels (N,) of a map-style Dataset whose items are `(x, y)`."""
    xs, ys = [], []
    for row in range(len(dataset)):
        item = dataset[row]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            got = f"a {type(item).__name__}" + (f" of {len(item)}" if isinstance(item, (tuple, list)) else "")
            raise DataError(f"{what}: item {row} is {got}; each item must be a pair (x, y), y = -1 when unlabelled")
        x, y = item
        x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x.detach().cpu()
        if xs and x.shape != xs[0].shape:
            raise DataError(f"{what}: item {row} has an input of shape {tuple(x.shape)}, item 0 {tuple(xs[0].shape)}")
        xs.append(x)
        ys.append(y.item() if isinstance(y, (torch.Tensor, np.generic)) and np.ndim(y) == 0 else y)
    if not xs:
        raise DataError(f"{what}: the dataset is empty")
    return torch.stack(xs), as_label_array(ys, f"{what} labels")
