"""A user's own data: `.npz` arrays and class-folder images (a directory or a .tar.gz of one).

Class folders: `<root>/<class>/<image>` or `<root>/{train,test}/<class>/<image>` (PNG/JPEG); images
under `<root>/unlabeled/` (or `unlabelled/`, at any depth below it) have no class and join the
unlabelled set, and `data.unlabeled` names a further folder (or .npz) of such images. Images
are decoded once with Pillow and cached as `.npz` in the cache directory, keyed by the source's
path, size and modification time, so later runs load arrays instead of decoding again.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .arrays import ArrayDataset, as_images, as_labels, notice

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
UNLABELED_DIRS = {"unlabeled", "unlabelled"}


def load_npz(path: Path) -> ArrayDataset:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # np.load of damaged bytes raises BadZipFile, zlib.error, KeyError, ...: all one error
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: missing array '{key}' (found: {', '.join(arrays) or 'none'})")
    x, y = as_images(arrays["x"], f"{path}:x"), as_labels(arrays["y"], f"{path}:y")
    has_test = "x_test" in arrays and "y_test" in arrays
    x_test = as_images(arrays["x_test"], f"{path}:x_test") if has_test else None
    y_test = as_labels(arrays["y_test"], f"{path}:y_test") if has_test else None
    labels = [y] + ([y_test] if y_test is not None else [])
    num_classes = int(max(int(t.max()) for t in labels if t.numel()) + 1) if y.numel() else 0
    if "num_classes" in arrays:
        num_classes = int(arrays["num_classes"])
    elif num_classes:
        notice(
            f"{path}: {num_classes} classes (the largest label is {num_classes - 1}; an array 'num_classes' says otherwise)"
        )
    x_unl = as_images(arrays["x_unlabeled"], f"{path}:x_unlabeled") if "x_unlabeled" in arrays else None
    return ArrayDataset(x, y, x_test, y_test, num_classes=num_classes, name=path.stem, x_unlabeled=x_unl)


def _iter_images(source: Path):
    """Yield (relative parts, bytes) of every image file in a directory or tar archive."""
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                yield path.relative_to(source).parts, path.read_bytes()
        return
    try:
        with tarfile.open(source, "r:*") as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
            for m in members:
                parts = Path(m.name).parts
                if Path(m.name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                # Read in memory, never extract: a member named '../x' cannot escape anywhere.
                if m.name.startswith("/") or ".." in parts:
                    raise DataError(f"{source}: archive member {m.name!r} points outside the archive")
                handle = tar.extractfile(m)
                if handle is not None:
                    yield parts, handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{source}: cannot read archive ({exc})") from None


def _decode(data: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("L") if img.mode in ("L", "1", "I;16", "I") else img.convert("RGB")
            return np.asarray(img, dtype=np.uint8)
    except UnidentifiedImageError:  # its message names an in-memory buffer, not the file
        raise DataError(f"{name}: cannot decode image (not a known image format, or cut short)") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{name}: cannot decode image ({exc})") from None


def _split_of(parts: tuple[str, ...], all_unlabeled: bool) -> tuple[str, str] | None:
    """(split, class) of an image at `parts` below the root; None for one that belongs nowhere."""
    if all_unlabeled or any(p.lower() in UNLABELED_DIRS for p in parts[:-1]):
        return "unlabeled", ""
    if len(parts) < 2:
        return None  # an image at the top level has no class folder
    split = parts[-3] if len(parts) >= 3 and parts[-3] in ("train", "test") else "train"
    return split, parts[-2]


def _stack(source: Path, images: list[np.ndarray]) -> np.ndarray:
    shapes = {img.shape for img in images}
    if len(shapes) != 1:
        raise DataError(f"{source}: images of different sizes {sorted(shapes)[:3]}; resize them to one size first")
    x = np.stack(images)
    return np.ascontiguousarray(x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2))  # (N, C, H, W)


def decode_folder(source: Path, all_unlabeled: bool = False) -> dict[str, np.ndarray]:
    """Decode every image once; return uint8 arrays (N, C, H, W) and labels per split
    (`x_unlabeled` for the images without a class; every image is one with `all_unlabeled`)."""
    records: dict[str, list[tuple[str, np.ndarray]]] = {}
    for parts, data in _iter_images(source):
        where = _split_of(parts, all_unlabeled)
        if where is not None:
            records.setdefault(where[0], []).append((where[1], _decode(data, f"{source}/{'/'.join(parts)}")))
    if all_unlabeled and not records:
        raise DataError(f"{source}: no images (PNG/JPEG)")
    if not all_unlabeled and not records.get("train"):
        raise DataError(f"{source}: no images in class folders (<root>/<class>/<image> or <root>/train/<class>/...)")
    classes = sorted({c for split, recs in records.items() if split != "unlabeled" for c, _ in recs})
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, np.ndarray] = {"classes": np.array(classes)}
    for split, recs in records.items():
        out[f"x_{split}"] = _stack(source, [img for _, img in recs])
        if split != "unlabeled":
            out[f"y_{split}"] = np.array([index[c] for c, _ in recs], dtype=np.int64)
    return out


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "semireg"


def decoded(source: Path, all_unlabeled: bool = False, cache: Path | None = None) -> dict[str, np.ndarray]:
    """decode_folder's arrays, from the cache when the source has not changed since."""
    if not source.exists():
        raise DataError(f"{source}: no such file or directory")
    st = source.stat()
    key = hashlib.sha1(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|{all_unlabeled}".encode()).hexdigest()[:16]
    cached = (cache or cache_dir()) / "folders" / f"{source.name}-{key}.npz"
    if cached.exists():
        try:
            with np.load(cached, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError):
            pass  # a damaged cache is rebuilt, not trusted
    arrays = decode_folder(source, all_unlabeled)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(cached)
    return arrays


def to_float(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).float().div_(255.0)


def load_folder(source: Path, cache: Path | None = None) -> ArrayDataset:
    arrays = decoded(source, cache=cache)
    classes = [str(c) for c in arrays["classes"]]
    has_test = "x_test" in arrays
    return ArrayDataset(
        to_float(arrays["x_train"]),
        torch.from_numpy(arrays["y_train"]),
        to_float(arrays["x_test"]) if has_test else None,
        torch.from_numpy(arrays["y_test"]) if has_test else None,
        num_classes=len(classes),
        name=source.name.split(".")[0],
        class_names=classes,
        x_unlabeled=to_float(arrays["x_unlabeled"]) if "x_unlabeled" in arrays else None,
    )


def load_unlabeled(source: Path, cache: Path | None = None) -> torch.Tensor:
    """Inputs without labels: every image in a folder (or .tar.gz), whatever its subfolders, or the
    array `x` (or the only array) of an .npz."""
    if source.suffix.lower() == ".npz":
        try:
            with np.load(source, allow_pickle=False) as f:
                key = "x" if "x" in f.files else f.files[0] if len(f.files) == 1 else None
                if key is None:
                    raise DataError(f"{source}: several arrays ({', '.join(f.files)}) and none named 'x'")
                return as_images(f[key], f"{source}:{key}")
        except DataError:
            raise
        except Exception as exc:  # zip/format errors of every kind: one clear message
            raise DataError(f"{source}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    return to_float(decoded(source, all_unlabeled=True, cache=cache)["x_unlabeled"])
