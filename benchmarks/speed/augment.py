"""Throughput of the strong view: semireg's batched augmentation vs a per-image PIL loader, one run.

Both pipelines do the same work per image: random horizontal flip, 4-pixel reflect pad and random
32x32 crop, RandAugment with `--ops` operations at magnitude 9 (operations drawn per image), and
conversion to a float tensor.

- batched: `semireg.augment` on (B, 3, 32, 32) float tensors, torch using `--threads` threads;
- per-image: the way data loaders usually do it: a torch DataLoader with `--workers` worker
  processes, each image a PIL image transformed by PIL operations, then stacked into batches.

Images are the shared CIFAR-10 JPEG copy when present (else random images of the same size).
Reported: images/s of each and their ratio. The two run back to back, several rounds, and the
median of each is reported, so a noisy machine affects both.

    python benchmarks/speed/augment.py [--images 10240] [--batch 512] [--ops 2] [--threads 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

# ----------------------------------------------------------------------------- the per-image pipeline


def _pil_ops():
    fill = (128, 128, 128)

    def affine(img, coeffs):
        return img.transform(img.size, Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=fill)

    return [
        ("identity", lambda img, v: img),
        ("shear_x", lambda img, v: affine(img, (1, 0.3 * v, 0, 0, 1, 0))),
        ("shear_y", lambda img, v: affine(img, (1, 0, 0, 0.3 * v, 1, 0))),
        ("translate_x", lambda img, v: affine(img, (1, 0, 0.45 * v * img.size[0], 0, 1, 0))),
        ("translate_y", lambda img, v: affine(img, (1, 0, 0, 0, 1, 0.45 * v * img.size[1]))),
        ("rotate", lambda img, v: img.rotate(30 * v, resample=Image.BILINEAR, fillcolor=fill)),
        ("brightness", lambda img, v: ImageEnhance.Brightness(img).enhance(1 + 0.9 * v)),
        ("color", lambda img, v: ImageEnhance.Color(img).enhance(1 + 0.9 * v)),
        ("contrast", lambda img, v: ImageEnhance.Contrast(img).enhance(1 + 0.9 * v)),
        ("sharpness", lambda img, v: ImageEnhance.Sharpness(img).enhance(1 + 0.9 * v)),
        ("posterize", lambda img, v: ImageOps.posterize(img, 8 - int(round(4 * abs(v))))),
        ("solarize", lambda img, v: ImageOps.solarize(img, int(255 * (1 - abs(v))))),
        ("autocontrast", lambda img, v: ImageOps.autocontrast(img)),
        ("equalize", lambda img, v: ImageOps.equalize(img)),
    ]


class PerImageDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, ops: int, magnitude: float) -> None:
        self.images, self.ops, self.level = images, ops, magnitude / 10
        self.table = _pil_ops()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = Image.fromarray(self.images[i])
        if random.random() < 0.5:
            img = ImageOps.mirror(img)
        padded = np.pad(np.asarray(img), ((4, 4), (4, 4), (0, 0)), mode="reflect")
        top, left = random.randint(0, 8), random.randint(0, 8)
        img = Image.fromarray(padded[top : top + 32, left : left + 32])
        for _ in range(self.ops):
            _, op = random.choice(self.table)
            img = op(img, self.level * random.choice((-1, 1)))
        return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)


def per_image(images: np.ndarray, args) -> float:
    loader = torch.utils.data.DataLoader(
        PerImageDataset(images, args.ops, 9.0),
        batch_size=args.batch,
        num_workers=args.workers,
        shuffle=True,
        persistent_workers=False,
    )
    t0 = time.perf_counter()
    n = sum(len(b) for b in loader)
    return n / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------- the batched pipeline


def batched(x: torch.Tensor, args) -> float:
    from semireg.augment import AugmentConfig, Augmenter

    aug = Augmenter(AugmentConfig(flip=True, pad=4, ra_ops=args.ops, ra_magnitude=9.0), seed=0)
    perm = torch.randperm(len(x))
    t0 = time.perf_counter()
    n = 0
    for i in range(0, len(x), args.batch):
        batch = aug.strong(aug.weak(x[perm[i : i + args.batch]]))
        n += len(batch)
    return n / (time.perf_counter() - t0)


def load_images(n: int) -> np.ndarray:
    import os
    from pathlib import Path

    root = Path(os.environ.get("SEMIREG_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    try:
        from semireg.data import load_dataset

        ds = load_dataset("cifar10-jpeg", str(root))
        x = ds.x_train[:n]
        print(f"images: {len(x)} from the CIFAR-10 JPEG copy")
    except Exception as exc:  # no shared data: random images of the same size
        print(f"images: random ({exc})")
        x = torch.rand(n, 3, 32, 32)
    return (x * 255).round().byte().permute(0, 2, 3, 1).numpy()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=10240)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--ops", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    arr = load_images(args.images)
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255).contiguous()
    batched(x[: args.batch * 2], args)  # warm-up
    rates_b, rates_p = [], []
    for _ in range(args.rounds):
        rates_b.append(batched(x, args))
        rates_p.append(per_image(arr, args))
    b, pi = statistics.median(rates_b), statistics.median(rates_p)
    print(
        f"torch {torch.__version__}, threads {args.threads}, workers {args.workers}, batch {args.batch}, "
        f"RandAugment ops {args.ops}, magnitude 9, rounds {args.rounds}"
    )
    print(f"batched (semireg.augment): {b:10.0f} images/s   rounds: {', '.join(f'{r:.0f}' for r in rates_b)}")
    print(f"per-image PIL loader     : {pi:10.0f} images/s   rounds: {', '.join(f'{r:.0f}' for r in rates_p)}")
    print(f"ratio batched / per-image: {b / pi:.2f}x")


if __name__ == "__main__":
    main()
