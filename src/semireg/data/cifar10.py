"""CIFAR-10: the canonical `cifar-10-python.tar.gz` (python pickles), read without running pickle code.

The python batches are pickled dicts holding a uint8 array `data` (N, 3072) and a list `labels`.
Unpickling is restricted to plain containers and numpy's array reconstruction: any other global
(`os.system`, `builtins.eval`, ...) raises `DataError` before it is looked up, so a tampered file
cannot execute code. The archive is read in memory; a member whose name is absolute or contains
`..` makes the whole archive refused, so nothing can point outside the target directory.

When the canonical files are absent, `cifar10` falls back to the JPEG copy in class folders
(`cifar10/cifar10-jpeg.tar.gz`, quality about 75) with a notice: its pixels differ slightly from
the canonical ones, and the data set is named `cifar10-jpeg` in run metadata so figures say so.
"""

from __future__ import annotations

import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .arrays import ArrayDataset
from .folders import load_folder

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
JPEG_COPY = Path("cifar10") / "cifar10-jpeg.tar.gz"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# The only globals a CIFAR python batch needs: numpy's array and dtype reconstruction (numpy 1.x
# and 2.x module paths). Everything else in the file must be a plain container, str, bytes or int.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, 'latin1'): a pure
    # str -> bytes conversion, needed to read batches re-saved by Python 3.
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataError(f"refusing to unpickle '{module}.{name}': a CIFAR batch holds only arrays and lists")
        return super().find_class(module, name)


def safe_unpickle(data: bytes, what: str) -> dict:
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from None
    except Exception as exc:  # a truncated or malformed pickle
        raise DataError(f"{what}: not a CIFAR python batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{what}: expected a dict, got {type(obj).__name__}")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _batch_arrays(batch: dict, what: str) -> tuple[np.ndarray, np.ndarray]:
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{what}: missing 'data' or 'labels' (found: {', '.join(map(str, batch))})")
    x, y = np.asarray(batch["data"]), np.asarray(batch["labels"], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise DataError(f"{what}: 'data' must be uint8 (N, 3072), got {x.dtype} {x.shape}")
    if len(x) != len(y):
        raise DataError(f"{what}: {len(x)} images but {len(y)} labels")
    return x.reshape(-1, 3, 32, 32), y


def _read_members(source: Path) -> dict[str, bytes]:
    """{member base name: bytes} of the batches in a tar.gz or an extracted directory."""
    wanted = set(TRAIN_BATCHES) | {TEST_BATCH}
    if source.is_dir():
        return {p.name: p.read_bytes() for p in source.iterdir() if p.name in wanted}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(source, "r:*") as tar:
            members = tar.getmembers()
            for m in members:  # check every name first: an unsafe archive is refused as a whole
                if m.name.startswith("/") or ".." in Path(m.name).parts:
                    raise DataError(f"{source}: archive member {m.name!r} points outside the target directory")
            for m in members:
                if m.isfile() and Path(m.name).name in wanted:
                    handle = tar.extractfile(m)
                    if handle is not None:
                        out[Path(m.name).name] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{source}: cannot read archive ({exc})") from None
    return out


def load_cifar10_python(source: Path) -> ArrayDataset:
    members = _read_members(source)
    missing = [n for n in TRAIN_BATCHES + [TEST_BATCH] if n not in members]
    if missing:
        raise DataError(f"{source}: missing CIFAR-10 batches {', '.join(missing)}")
    parts = [_batch_arrays(safe_unpickle(members[n], f"{source}:{n}"), f"{source}:{n}") for n in TRAIN_BATCHES]
    x_test, y_test = _batch_arrays(
        safe_unpickle(members[TEST_BATCH], f"{source}:{TEST_BATCH}"), f"{source}:{TEST_BATCH}"
    )
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    to_x = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # (N, 3, 32, 32) uint8: floats per batch
    return ArrayDataset(
        to_x(x_train),
        torch.from_numpy(y_train),
        to_x(x_test),
        torch.from_numpy(y_test),
        num_classes=10,
        name="cifar10",
        class_names=list(CLASSES),
    )


def find_cifar10(roots: list[Path]) -> tuple[Path, str] | None:
    """(path, kind) of the first CIFAR-10 copy found; kind is 'python' or 'jpeg'."""
    for root in roots:
        for candidate in (root / ARCHIVE, root / "cifar10" / ARCHIVE, root / FOLDER, root / "cifar10" / FOLDER):
            if candidate.exists():
                return candidate, "python"
    for root in roots:
        if (root / JPEG_COPY).exists():
            return root / JPEG_COPY, "jpeg"
    return None


def load_cifar10(roots: list[Path], *, jpeg_only: bool = False) -> ArrayDataset:
    found = None if jpeg_only else find_cifar10(roots)
    if jpeg_only:
        found = next(((r / JPEG_COPY, "jpeg") for r in roots if (r / JPEG_COPY).exists()), None)
    if found is None:
        where = ", ".join(str(r) for r in roots)
        raise DataError(
            f"CIFAR-10 not found under {where} (looked for {ARCHIVE}, {FOLDER}/ and {JPEG_COPY}); "
            "pass --data-dir or set SEMIREG_DATA"
        )
    path, kind = found
    if kind == "python":
        return load_cifar10_python(path)
    if not jpeg_only:
        print(
            f"semireg: canonical CIFAR-10 not found; using the JPEG copy {path} (pixels differ slightly)",
            file=sys.stderr,
        )
    ds = load_folder(path)
    if ds.class_names != CLASSES:
        raise DataError(f"{path}: class folders {ds.class_names} are not CIFAR-10's")
    ds.name = "cifar10-jpeg"
    return ds
