"""Tabular data from a CSV file: `csv:PATH`.

The first line names the columns. One column holds the labels (`data.label_column`; by default the
first of label, target, class, y that exists); a row whose label is empty is unlabelled and joins
the unlabelled set. Every other column must be numeric: a column holding text (a categorical
feature, an id) is refused with its name and first text value, to be encoded as numbers (one-hot
columns) or dropped (`data.drop_columns`) - one-hot encoding here would fix an encoding that
predictions on new rows would then have to reproduce, so that choice stays the user's. An empty
or non-finite feature value is an error naming its line. Labels are classes by name (numeric
labels sort as numbers). With `standardize` (the default), each feature is shifted and scaled to
mean 0 and standard deviation 1 over all rows of the file (no label is used); the statistics are
kept with the run so that `semireg predict` scales new rows the same way.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .arrays import ArrayDataset

LABEL_COLUMNS = ("label", "target", "class", "y")


def _label_column(header: list[str], wanted: str, path: Path) -> int:
    if wanted:
        if wanted not in header:
            raise DataError(f"{path}: no column named '{wanted}' (columns: {', '.join(header[:20])})")
        return header.index(wanted)
    for name in LABEL_COLUMNS:
        if name in header:
            return header.index(name)
    raise DataError(
        f"{path}: no label column ({', '.join(LABEL_COLUMNS)}); name it with data.label_column "
        f"(columns: {', '.join(header[:20])})"
    )


def _float(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        if text.strip() == "":
            raise DataError(f"{path}: line {line}, column '{column}': empty value; fill or drop it") from None
        raise DataError(
            f"{path}: column '{column}' is not numeric (line {line}: {text[:40]!r}); encode it as "
            "numbers (e.g. one-hot columns) or drop it with data.drop_columns"
        ) from None
    if not math.isfinite(value):
        raise DataError(f"{path}: line {line}, column '{column}': {text.strip()} (NaN or inf); fill or drop it")
    return value


def _sort_names(names: set[str]) -> list[str]:
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


def _table(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV: blank lines dropped, every row as long as the header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header line and at least one row")
    header = [h.strip() for h in rows[0]]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {line} has {len(row)} fields, the header {len(header)}")
    return header, rows[1:]


def _numbers(path: Path, header: list[str], rows: list[list[str]], columns: list[int]) -> np.ndarray:
    """(N, len(columns)) float64 of those columns, every value finite and within float32."""
    x = np.asarray(
        [[_float(row[i], path, line, header[i]) for i in columns] for line, row in enumerate(rows, start=2)],
        dtype=np.float64,
    ).reshape(len(rows), len(columns))
    huge = np.abs(x) > np.finfo(np.float32).max / 1e3  # beyond float32 (with room for standardising)
    if huge.any():
        row, col = np.argwhere(huge)[0]
        raise DataError(
            f"{path}: line {row + 2}, column '{header[columns[col]]}': {x[row, col]:g} is too large for float32; rescale it"
        )
    return x


def read_csv(path: Path, label_column: str = "", drop_columns: tuple[str, ...] = ()) -> dict:
    """Rows of a CSV as (features (N, D) float64, labels as text ('' = unlabelled), feature names)."""
    header, rows = _table(path)
    missing = [c for c in drop_columns if c not in header]
    if missing:
        raise DataError(f"{path}: data.drop_columns names no such column: {', '.join(missing)}")
    label_at = _label_column(header, label_column, path)
    keep = [i for i, h in enumerate(header) if i != label_at and h not in drop_columns]
    if not keep:
        raise DataError(f"{path}: no feature columns besides the label")
    return {
        "x": _numbers(path, header, rows, keep),
        "labels": [row[label_at].strip() for row in rows],
        "columns": [header[i] for i in keep],
    }


def read_features(path: Path, columns: list[str]) -> torch.Tensor:
    """(N, D) float32 the named feature columns of a CSV, in that order (new rows to predict)."""
    header, rows = _table(path)
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}: missing the feature column(s) the run was trained on: {', '.join(missing[:10])}")
    return torch.from_numpy(_numbers(path, header, rows, [header.index(c) for c in columns]).astype(np.float32))


def load_csv(
    path: Path, label_column: str = "", drop_columns: tuple[str, ...] = (), standardize: bool = True
) -> ArrayDataset:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    table = read_csv(path, label_column, tuple(drop_columns))
    x, labels = table["x"], table["labels"]
    labelled = np.array([label != "" for label in labels])
    if not labelled.any():
        raise DataError(f"{path}: no row has a label")
    names = _sort_names({label for label in labels if label})
    index = {name: i for i, name in enumerate(names)}
    stats = None
    if standardize:
        mean, std = x.mean(axis=0), x.std(axis=0)
        std = np.where(std > 0, std, 1.0).astype(np.float32)  # a constant column stays 0, not NaN
        x = (x - mean) / std
        stats = {"mean": mean.tolist(), "std": std.tolist(), "columns": table["columns"]}
    y = torch.tensor([index[label] for label in labels if label], dtype=torch.long)
    x_t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return ArrayDataset(
        x_t[torch.from_numpy(labelled)],
        y,
        None,
        None,
        num_classes=len(names),
        name=path.stem,
        class_names=names,
        x_unlabeled=x_t[torch.from_numpy(~labelled)] if (~labelled).any() else None,
        feature_stats=stats,
    )
