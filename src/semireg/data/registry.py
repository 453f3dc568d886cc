"""Data set names -> loaders, and where data files are looked up."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import ConfigError, DataError
from .arrays import ArrayDataset, pixels_to_float
from .cifar10 import load_cifar10
from .digits import load_digits
from .folders import cache_dir, load_folder, load_npz, load_unlabeled
from .mnist import load_mnist
from .tabular import load_csv


def resolve_data_dir(data_dir: str = "") -> list[Path]:
    """Where to look, in order: --data-dir, then $SEMIREG_DATA, then the user cache directory."""
    roots = []
    if data_dir:
        roots.append(Path(data_dir).expanduser())
    if os.environ.get("SEMIREG_DATA"):
        roots.append(Path(os.environ["SEMIREG_DATA"]).expanduser())
    roots.append(cache_dir() / "data")
    return roots


def locate(location: str, roots: list[Path]) -> Path:
    """A user's path as given, else relative to the data roots."""
    path = Path(location).expanduser()
    if not path.is_absolute() and not path.exists():
        path = next((r / location for r in roots if (r / location).exists()), path)
    return path


def load_dataset(
    name: str,
    data_dir: str = "",
    download: bool = False,
    *,
    label_column: str = "",
    drop_columns: tuple[str, ...] = (),
    standardize: bool = True,
    unlabeled: str = "",
    image_size: int = 0,
    skip_unreadable: bool = False,
) -> ArrayDataset:
    """The named data set; `unlabeled` adds a folder (or .npz) of unlabelled inputs to it (images
    brought to the labelled images' size and channels)."""
    roots = resolve_data_dir(data_dir)
    images = (image_size, skip_unreadable)
    ds = _load(name, roots, download, label_column, tuple(drop_columns), standardize, images)
    if unlabeled:
        like = tuple(ds.x_train.shape[1:])
        extra = load_unlabeled(locate(unlabeled, roots), like=like, skip_unreadable=skip_unreadable)
        if extra.shape[1:] != ds.x_train.shape[1:]:
            raise DataError(
                f"data.unlabeled {unlabeled}: inputs of shape {tuple(extra.shape[1:])}, "
                f"the labelled ones {tuple(ds.x_train.shape[1:])}"
            )
        if len({t.dtype for t in (ds.x_train, ds.x_unlabeled, extra) if t is not None}) > 1:  # pixels and floats
            ds.x_train, ds.x_test, ds.x_unlabeled, extra = (
                pixels_to_float(t) if t is not None else None for t in (ds.x_train, ds.x_test, ds.x_unlabeled, extra)
            )
        ds.x_unlabeled = extra if ds.x_unlabeled is None else torch.cat([ds.x_unlabeled, extra])
    return ds


def _load(
    name: str,
    roots: list[Path],
    download: bool,
    label_column: str,
    drop_columns: tuple[str, ...],
    standardize: bool,
    images: tuple[int, bool] = (0, False),
) -> ArrayDataset:
    if name == "mnist":
        return load_mnist(roots, download_to=roots[0] if download else None)
    if name == "digits":
        return load_digits()
    if name in ("cifar10", "cifar10-jpeg"):
        return load_cifar10(roots, jpeg_only=name == "cifar10-jpeg")
    kind, _, location = name.partition(":")
    if kind in ("npz", "folder", "csv") and location:
        path = locate(location, roots)
        if kind == "csv":
            return load_csv(path, label_column, drop_columns, standardize)
        return load_npz(path) if kind == "npz" else load_folder(path, image_size=images[0], skip_unreadable=images[1])
    raise ConfigError(
        f"data.dataset: unknown data set '{name}' (mnist, digits, cifar10, cifar10-jpeg, npz:PATH, folder:PATH, csv:PATH)"
    )
