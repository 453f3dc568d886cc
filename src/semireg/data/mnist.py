"""MNIST from the canonical IDX files, each checked against its published md5."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import torch

from ..errors import DataError
from .arrays import ArrayDataset
from .idx import md5, parse_idx, read_bytes

# md5 of the *decompressed* files, as published on the MNIST page.
FILES = {
    "train_images": ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
    "train_labels": ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
    "test_images": ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    "test_labels": ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
}
MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]


def find_file(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "mnist", root / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def download(root: Path) -> None:
    """Fetch the four files from the canonical mirrors. Only called when the user asks."""
    target = root / "mnist"
    target.mkdir(parents=True, exist_ok=True)
    for stem, _ in FILES.values():
        if find_file(root, stem):
            continue
        for mirror in MIRRORS:
            try:
                with urllib.request.urlopen(mirror + stem + ".gz", timeout=60) as resp:
                    data = resp.read()
                tmp = target / (stem + ".gz.part")
                tmp.write_bytes(data)
                tmp.rename(target / (stem + ".gz"))
                break
            except OSError:
                continue
        else:
            raise DataError(f"could not download {stem}.gz from {', '.join(MIRRORS)}")


def load_mnist(roots: list[Path], download_to: Path | None = None) -> ArrayDataset:
    root = next((r for r in roots if find_file(r, FILES["train_images"][0])), None)
    if root is None and download_to is not None:
        download(download_to)
        root = download_to
    if root is None:
        where = ", ".join(str(r) for r in roots)
        raise DataError(f"MNIST not found in {where}; pass --data-dir, set $SEMIREG_DATA, or add --download")
    arrays = {}
    for key, (stem, expected) in FILES.items():
        path = find_file(root, stem)
        if path is None:
            raise DataError(f"MNIST: {stem}[.gz] missing in {root}")
        data = read_bytes(path)
        if md5(data) != expected:
            raise DataError(
                f"{path}: md5 {md5(data)} does not match the published {expected} (corrupt or truncated file)"
            )
        arrays[key] = parse_idx(data, str(path))
    to_x = lambda a: torch.from_numpy(a.copy()).unsqueeze(1)  # (N, 1, 28, 28) uint8: floats per batch
    to_y = lambda a: torch.from_numpy(a.astype("int64"))
    return ArrayDataset(
        to_x(arrays["train_images"]),
        to_y(arrays["train_labels"]),
        to_x(arrays["test_images"]),
        to_y(arrays["test_labels"]),
        num_classes=10,
        name="mnist",
    )
