"""semireg.augment's hand-written RandAugment operations against kornia's, where kornia has the
same operation with per-image parameters as tensors: time (medians of interleaved rounds, one
process) and the largest difference of the outputs. The group size is what one operation gets of a
512-image batch at 2 operations per image (512 * 2 / 14 ~ 73).

kornia operations whose semantics differ from PIL's (and from semireg's, which follow PIL, as the
TensorFlow and torchvision RandAugment do) are listed, not timed: `adjust_brightness` adds the
factor (PIL multiplies), `adjust_contrast` scales without the mean (PIL blends with the mean grey).

    pip install kornia && python benchmarks/speed/kornia_ops.py [--n 73] [--rounds 20]

kornia is not a dependency of semireg: nothing imported it, and this benchmark (docs/performance.md)
found none of its operations faster than semireg's own, so issue 16 dropped it.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import kornia
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _timing
from _timing import interleaved

from semireg import augment


def contenders(x: torch.Tensor, v: torch.Tensor) -> dict[str, tuple]:
    """op -> (semireg call, kornia call) on the same images and per-image levels v in [-1, 1]."""
    bits = (8 - torch.round(4.0 * v.abs())).to(torch.int32)
    angle = v * 30.0
    theta = torch.zeros(len(v), 2, 3)
    rad = angle * math.pi / 180
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = rad.cos(), -rad.sin(), rad.sin(), rad.cos()
    h, w = x.shape[-2:]
    # kornia's matrices map source pixel coordinates to output pixel coordinates; build the same
    # rotation about the image centre in pixels.
    center = torch.tensor([[(w - 1) / 2, (h - 1) / 2]]).expand(len(v), 2)
    m_pixels = kornia.geometry.transform.get_rotation_matrix2d(center, -angle, torch.ones(len(v), 2))
    fill = torch.full((3,), 0.5)
    return {
        "sharpness": (lambda: augment.sharpness(x, v, 0.5), lambda: kornia.enhance.sharpness(x, 1.0 + 0.9 * v)),
        "posterize": (lambda: augment.posterize(x, v, 0.5), lambda: kornia.enhance.posterize(x, bits)),
        "solarize": (lambda: augment.solarize(x, v, 0.5), lambda: kornia.enhance.solarize(x, 1.0 - v.abs())),
        "equalize": (lambda: augment.equalize(x, v, 0.5), lambda: kornia.enhance.equalize(x)),
        "rotate (nearest)": (
            lambda: augment.rotate(x, v, 0.5),
            lambda: kornia.geometry.transform.warp_affine(
                x, m_pixels, (h, w), mode="nearest", padding_mode="fill", fill_value=fill
            ),
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=73)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.n, 3, 32, 32, generator=g)
    v = torch.rand(args.n, generator=g) * 2 - 1
    print(f"kornia {kornia.__version__}, torch {torch.__version__}, {args.n} images of 3x32x32, 2 threads")
    for name, (ours, theirs) in contenders(x, v).items():
        t = interleaved({"semireg": ours, "kornia": theirs}, rounds=args.rounds, warmup=3)
        diff = float((ours() - theirs()).abs().max())
        print(
            f"{name:18s} semireg {1e3 * t['semireg']:7.3f} ms   kornia {1e3 * t['kornia']:7.3f} ms   "
            f"kornia/semireg time {t['kornia'] / t['semireg']:5.2f}   max |difference| {diff:.3f}"
        )


if __name__ == "__main__":
    main()
