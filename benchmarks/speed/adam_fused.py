"""One Adam update of a registered model's parameters: torch's default implementation, its foreach one,
and the fused kernel semireg builds (`semireg.optim.build_optimizer`), timed in one process in
alternating rounds; prints each one's median and the ratios to the fused one.

    python benchmarks/speed/adam_fused.py [--model mlp] [--threads 2] [--rounds 40] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _timing
from _timing import header, interleaved, write

from semireg.models import build_model

IN_SHAPE = (1, 28, 28)  # MNIST-sized inputs: `mlp` is then the permutation-invariant MNIST network


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model, IN_SHAPE, 10)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    optimizers = {
        "default": torch.optim.Adam(params, lr=1e-6),
        "foreach": torch.optim.Adam(params, lr=1e-6, foreach=True),
        "fused": torch.optim.Adam(params, lr=1e-6, fused=True),
    }
    seconds = interleaved({name: opt.step for name, opt in optimizers.items()}, rounds=args.rounds)
    n_params = sum(p.numel() for p in params)
    print(f"{args.model}: {n_params / 1e6:.2f} M parameters, {args.threads} threads")
    for name, s in seconds.items():
        print(f"  {name:8s} {s * 1e3:7.2f} ms   {s / seconds['fused']:5.2f}x the fused update's time")
    write(args.out, {**header(), "model": args.model, "parameters": n_params, "seconds": seconds})


if __name__ == "__main__":
    main()
