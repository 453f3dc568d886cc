"""Data set names -> loaders, and where data files are looked up."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError
from .arrays import ArrayDataset
from .cifar10 import load_cifar10
from .digits import load_digits
from .folders import cache_dir, load_folder, load_npz
from .mnist import load_mnist


def resolve_data_dir(data_dir: str = "") -> list[Path]:
    """Where to look, in order: --data-dir, then $SEMIREG_DATA, then the user cache directory."""
    roots = []
    if data_dir:
        roots.append(Path(data_dir).expanduser())
    if os.environ.get("SEMIREG_DATA"):
        roots.append(Path(os.environ["SEMIREG_DATA"]).expanduser())
    roots.append(cache_dir() / "data")
    return roots


def load_dataset(name: str, data_dir: str = "", download: bool = False) -> ArrayDataset:
    roots = resolve_data_dir(data_dir)
    if name == "mnist":
        return load_mnist(roots, download_to=roots[0] if download else None)
    if name == "digits":
        return load_digits()
    if name in ("cifar10", "cifar10-jpeg"):
        return load_cifar10(roots, jpeg_only=name == "cifar10-jpeg")
    kind, _, location = name.partition(":")
    if kind in ("npz", "folder") and location:
        path = Path(location).expanduser()
        if not path.is_absolute() and not path.exists():
            path = next((r / location for r in roots if (r / location).exists()), path)
        return load_npz(path) if kind == "npz" else load_folder(path)
    raise ConfigError(f"data.dataset: unknown data set '{name}' (mnist, digits, cifar10, cifar10-jpeg, npz:PATH, folder:PATH)")
