"""The IDX format of the MNIST files: a magic number, big-endian dimensions, then the data."""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_bytes(path: Path) -> bytes:
    """The decompressed bytes of a raw or gzip-compressed file."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:  # zlib.error: damaged deflate data
        raise DataError(f"{path}: cannot read ({exc})") from None


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def parse_idx(data: bytes, what: str = "IDX data") -> np.ndarray:
    """Parse IDX bytes into an array. Every inconsistency raises DataError."""
    if len(data) < 4:
        raise DataError(f"{what}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{what}: not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        raise DataError(f"{what}: unknown IDX element type 0x{code:02x}")
    if ndim == 0:
        raise DataError(f"{what}: IDX file with zero dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{what}: truncated IDX header")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_DTYPES[code])
    count = math.prod(dims)  # Python ints: an int64 product of four 32-bit dims can wrap
    if math.prod(d for d in dims if d) * dtype.itemsize >= 2**62:  # numpy refuses such a shape even when empty
        raise DataError(f"{what}: shape {tuple(dims)} is too large to be a real IDX file")
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        raise DataError(
            f"{what}: expected {expected} bytes for shape {tuple(dims)}, found {len(data)} (truncated or corrupt)"
        )
    return np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims).astype(dtype.newbyteorder("="))
