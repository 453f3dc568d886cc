"""Decoding a folder of images: semireg's decoder (headers first, then Pillow on every core, the size
policy applied) against a plain one-process Pillow loop, on the same files, in one run.

    SEMIREG_DATA=../shared/data python benchmarks/speed/decode.py            # the CIFAR-10 JPEG copy (60,000)
    python benchmarks/speed/decode.py --source some/folder --limit 5000

A second set is made in memory: 2,000 JPEG photos of 400 x 300 pixels (random colours, to be
decoded and brought to 128 px), where decoding, not the Python around it, dominates.
Both read the files' bytes from memory first (the archive is read once, not timed), so that the
comparison is of decoding. Writes benchmarks/results/decode-speed.json: images per second of each,
their ratio and the machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _timing import header  # noqa: E402

from semireg.data import folders  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "results" / "decode-speed.json"


def plain_loop(files: list[tuple[tuple[str, ...], bytes]], size: int = 0) -> np.ndarray:
    """What a script does without semireg: one process, open, convert (resize), stack."""
    out = []
    for _, data in files:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            out.append(np.asarray(img.resize((size, size)) if size else img, dtype=np.uint8))
    return np.stack(out)


def photos(n: int) -> list[tuple[tuple[str, ...], bytes]]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
        out.append((("photos", str(i % 2), f"{i}.jpg"), buf.getvalue()))
    return out


def measure(source: Path, files: list, image_size: int = 0) -> dict:
    """Images per second of the plain loop and of semireg's decoder on the same bytes."""
    seconds = {}
    start = time.perf_counter()
    plain = plain_loop(files, image_size)
    seconds["plain_pillow_loop"] = time.perf_counter() - start
    # semireg's decoder on the same bytes in memory (its reading of the source is replaced by the list)
    with mock.patch.object(folders, "_iter_images", lambda _: iter(files)):
        start = time.perf_counter()
        arrays = folders.decode_folder(source, image_size=image_size)
        seconds["semireg_decode_folder"] = time.perf_counter() - start
    decoded = sum(len(v) for k, v in arrays.items() if k.startswith("x_"))
    assert decoded == len(plain), (decoded, len(plain))
    rate = {k: len(files) / v for k, v in seconds.items()}
    return {
        "images": len(files),
        "images_per_second": rate,
        "ratio_semireg_over_plain": rate["semireg_decode_folder"] / rate["plain_pillow_loop"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data_root = Path(os.environ.get("SEMIREG_DATA", "../shared/data"))
    ap.add_argument("--source", type=Path, default=data_root / "cifar10" / "cifar10-jpeg.tar.gz")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    args = ap.parse_args()
    files = list(folders._iter_images(args.source))  # the bytes, read once (not timed)
    files = files[: args.limit] if args.limit else files
    result = {
        args.source.name: measure(args.source, files),
        "photos-400x300-to-128px": measure(Path("photos"), photos(2000), image_size=128),
        "cores": os.cpu_count(),
        "machine": header(),
        "command": "SEMIREG_DATA=../shared/data python benchmarks/speed/decode.py",
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
