"""A user's own data: `.npz` arrays and class-folder images (a directory or a .tar.gz of one).

Class folders: `<root>/<class>/<image>` or `<root>/{train,test}/<class>/<image>` (PNG/JPEG); images
under `<root>/unlabeled/` (or `unlabelled/`, at any depth below it) have no class and join the
unlabelled set, and `data.unlabeled` names a further folder (or .npz) of such images. Images
are decoded once with Pillow (on every core, with a progress bar) and cached as `.npz` in the cache
directory, keyed by the source's path, size and modification time and the size policy, so later
runs load arrays instead of decoding again.

Photos as people keep them: EXIF orientation is applied; greyscale, palette and RGBA images are
converted (RGB as soon as one image has colour; transparency onto white); images of several sizes
are brought to one by the policy of `fit_image` (the shorter side scaled to the target, the centre
cropped), the target being `data.image_size` or, when it is 0, the median shorter side (said in one
line). `semireg predict` applies the same policy to a file of any size.
"""

from __future__ import annotations

import hashlib
import io
import os
import statistics
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from ..errors import DataError
from .arrays import ArrayDataset, as_images, as_labels, notice

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
UNLABELED_DIRS = {"unlabeled", "unlabelled"}
GREY_MODES = {"L", "LA", "1", "I;16", "I", "F"}
POLICY = "shorter-side-then-centre-crop/1"  # in the cache key: a changed policy never reads old arrays
EXIF_TRANSPOSED = {5, 6, 7, 8}  # orientations that swap width and height
BIG_IMAGE_PIXELS = 96 * 96  # median image area from which decoding uses every core
DECODE_CHUNK = 64  # images per task: one task per image costs more than a thumbnail's decode


def fit_image(img: Image.Image, target: tuple[int, int] | None, mode: str) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 pixels: EXIF orientation applied, converted to `mode` ("L" or "RGB";
    transparency composited onto white), then, with a target (H, W), scaled so that it covers H x W
    (the shorter side fits) and the centre cropped: no distortion, the borders of the longer side go."""
    if img.getexif().get(0x0112, 1) != 1:  # exif_transpose copies even an upright image: only when needed
        img = ImageOps.exif_transpose(img)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    img = img.convert(mode)
    if target is not None and img.size != (target[1], target[0]):
        h, w = target
        scale = max(h / img.height, w / img.width)
        size = (max(w, round(img.width * scale)), max(h, round(img.height * scale)))
        img = img.resize(size, Image.BICUBIC, reducing_gap=3.0)
        left, top = (size[0] - w) // 2, (size[1] - h) // 2
        img = img.crop((left, top, left + w, top + h))
    return np.asarray(img, dtype=np.uint8)


def header(data: bytes, name: str) -> tuple[tuple[int, int], bool] | None:
    """((height, width) as displayed, whether it has colour) from the file's header, without decoding
    its pixels; None for a file that is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if img.getexif().get(0x0112, 1) in EXIF_TRANSPOSED:
                w, h = h, w
            return (h, w), img.mode not in GREY_MODES
    except (UnidentifiedImageError, OSError, ValueError):
        return None


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


def decode(data: bytes, name: str, target: tuple[int, int] | None, mode: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return fit_image(img, target, mode)
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


def _stack(images: list[np.ndarray]) -> np.ndarray:
    x = np.stack(images)
    return np.ascontiguousarray(x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2))  # (N, C, H, W)


def choose_target(source: Path, sizes: list[tuple[int, int]], image_size: int) -> tuple[int, int] | None:
    """The size every image is brought to: data.image_size (square) when set; the images' own when
    they all have one; else the median shorter side (square), said in one line."""
    if image_size > 0:
        return image_size, image_size
    if len(set(sizes)) <= 1:
        return None
    side = int(statistics.median(min(s) for s in sizes))
    shortest, longest = min(min(s) for s in sizes), max(max(s) for s in sizes)
    notice(
        f"{source.name}: images of {len(set(sizes))} sizes ({shortest} to {longest} px a side); each is scaled so "
        f"its shorter side is {side} px and cropped to the centre {side}x{side} (the median shorter side; "
        "data.image_size=N to choose)"
    )
    return side, side


def decode_folder(
    source: Path,
    all_unlabeled: bool = False,
    image_size: int = 0,
    skip_unreadable: bool = False,
    target: tuple[int, int] | None = None,
    mode: str | None = None,
) -> dict[str, np.ndarray]:
    """Decode every image once (on every core); return uint8 arrays (N, C, H, W) and labels per split
    (`x_unlabeled` for the images without a class; every image is one with `all_unlabeled`). `target`
    (H, W) and `mode` ("L", "RGB") impose a size and channels (an unlabelled folder joining a labelled
    one); else they come from `image_size` or the data (choose_target). An unreadable file is an error naming it, or with `skip_unreadable`
    left out and counted."""
    files = []  # (split, class, name, bytes, header)
    for parts, data in _iter_images(source):
        where = _split_of(parts, all_unlabeled)
        if where is not None:
            name = f"{source}/{'/'.join(parts)}"
            files.append((where[0], where[1], name, data, header(data, name)))
    bad = [f[2] for f in files if f[4] is None]
    if bad and not skip_unreadable:
        decode(next(f[3] for f in files if f[4] is None), bad[0], None, "L")  # raises the file's own error
    if bad:
        notice(f"{source.name}: skipped {len(bad)} unreadable file(s) (first: {bad[0]})")
        files = [f for f in files if f[4] is not None]
    if all_unlabeled and not files:
        raise DataError(f"{source}: no images (PNG/JPEG)")
    if not all_unlabeled and not any(f[0] == "train" for f in files):
        raise DataError(f"{source}: no images in class folders (<root>/<class>/<image> or <root>/train/<class>/...)")
    if target is None:
        target = choose_target(source, [f[4][0] for f in files], image_size)
    mode = mode or ("RGB" if any(f[4][1] for f in files) else "L")
    # Pillow decodes without the GIL, so threads pay where decoding dominates (photos); for thumbnails
    # (CIFAR's 32 px) the Python around each image does, and one thread is fastest (benchmarks/speed/decode.py)
    big = statistics.median(h * w for (h, w), _ in (f[4] for f in files)) >= BIG_IMAGE_PIXELS
    chunks = [files[i : i + DECODE_CHUNK] for i in range(0, len(files), DECODE_CHUNK)]
    work = lambda chunk: [decode(f[3], f[2], target, mode) for f in chunk]  # noqa: E731
    bar = tqdm(total=len(files), desc=f"decoding {source.name}", disable=len(files) < 2000)
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) if big else 1) as pool:
        pixels = []
        for done in pool.map(work, chunks):
            pixels.extend(done)
            bar.update(len(done))
    bar.close()
    classes = sorted({f[1] for f in files if f[0] != "unlabeled"})
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, np.ndarray] = {"classes": np.array(classes)}
    for split in dict.fromkeys(f[0] for f in files):
        chosen = [i for i, f in enumerate(files) if f[0] == split]
        out[f"x_{split}"] = _stack([pixels[i] for i in chosen])
        if split != "unlabeled":
            out[f"y_{split}"] = np.array([index[files[i][1]] for i in chosen], dtype=np.int64)
    return out


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "semireg"


def decoded(
    source: Path,
    all_unlabeled: bool = False,
    cache: Path | None = None,
    image_size: int = 0,
    skip_unreadable: bool = False,
    target: tuple[int, int] | None = None,
    mode: str | None = None,
) -> dict[str, np.ndarray]:
    """decode_folder's arrays, from the cache when the source and the size policy have not changed since."""
    if not source.exists():
        raise DataError(f"{source}: no such file or directory")
    st = source.stat()
    # a directory's own mtime changes when a file is added or removed in it, not in its subfolders
    newest = max((p.stat().st_mtime_ns for p in source.rglob("*")), default=0) if source.is_dir() else 0
    policy = f"{POLICY}|{image_size}|{skip_unreadable}|{target}|{mode}"
    raw = f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|{newest}|{all_unlabeled}|{policy}"
    key = hashlib.sha1(raw.encode()).hexdigest()[:16]
    cached = (cache or cache_dir()) / "folders" / f"{source.name}-{key}.npz"
    if cached.exists():
        try:
            with np.load(cached, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError):
            pass  # a damaged cache is rebuilt, not trusted
    arrays = decode_folder(source, all_unlabeled, image_size, skip_unreadable, target, mode)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(cached)
    return arrays


def pixels(arr: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) as it is: images stay a quarter of their float32 bytes until a batch is used."""
    return torch.from_numpy(np.ascontiguousarray(arr))


def load_folder(
    source: Path, cache: Path | None = None, image_size: int = 0, skip_unreadable: bool = False
) -> ArrayDataset:
    arrays = decoded(source, cache=cache, image_size=image_size, skip_unreadable=skip_unreadable)
    classes = [str(c) for c in arrays["classes"]]
    has_test = "x_test" in arrays
    return ArrayDataset(
        pixels(arrays["x_train"]),
        torch.from_numpy(arrays["y_train"]),
        pixels(arrays["x_test"]) if has_test else None,
        torch.from_numpy(arrays["y_test"]) if has_test else None,
        num_classes=len(classes),
        name=source.name.split(".")[0],
        class_names=classes,
        x_unlabeled=pixels(arrays["x_unlabeled"]) if "x_unlabeled" in arrays else None,
    )


def load_unlabeled(
    source: Path, cache: Path | None = None, like: tuple[int, ...] | None = None, skip_unreadable: bool = False
) -> torch.Tensor:
    """Inputs without labels: every image in a folder (or .tar.gz), whatever its subfolders, brought
    to the shape `like` (C, H, W) of the labelled images, or the array `x` (or the only array) of an .npz."""
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
    target = tuple(like[1:]) if like is not None and len(like) == 3 else None
    mode = ("L" if like[0] == 1 else "RGB") if target is not None else None
    arrays = decoded(source, True, cache, skip_unreadable=skip_unreadable, target=target, mode=mode)
    return pixels(arrays["x_unlabeled"])
