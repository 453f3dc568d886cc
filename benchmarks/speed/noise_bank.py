"""The MLP's Gaussian noise drawn fresh at every pass against windows of a bank drawn once
(`model.noise_bank`, semireg.models.mlp.GaussianNoise), alone on the VAT paper's MLP's hidden
activations and as part of a whole VAT + entropy-minimisation step under bf16 autocast (the
`mnist-100-pi` recipe's `vat-entmin` batch sizes, 100 + 250), timed in one process in alternating
rounds; prints medians and ratios.

    python benchmarks/speed/noise_bank.py [--threads 2] [--rounds 40] [--bank 8388608] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _timing
from _timing import header, interleaved, write

from semireg.methods import Batch, get_method
from semireg.methods.vat import VATOptions
from semireg.models import build_model
from semireg.models.mlp import VAT_HIDDEN, GaussianNoise

STD = 0.5


def vat_entmin_step(bank: int):
    """One optimizer step of VAT + entropy minimisation on the VAT paper's MLP under bf16 autocast."""
    torch.manual_seed(0)
    model = build_model("mlp", (1, 28, 28), 10, noise=STD, noise_bank=bank).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, fused=True)
    batch = Batch(torch.rand(100, 1, 28, 28), torch.randint(0, 10, (100,)), torch.rand(250, 1, 28, 28))
    vat, opts = get_method("vat"), VATOptions(eps=5.0, on="unlabeled", entmin=0.3, probe="autocast")

    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            terms = vat.step(model, batch, opts)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--bank", type=int, default=1 << 23)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fresh, banked = GaussianNoise(STD).train(), GaussianNoise(STD, args.bank).train()
    results: dict[str, dict[str, float]] = {}
    for dtype in (torch.bfloat16, torch.float32):
        # (250, width) for every hidden width: one pass of the unlabelled batch through the noise layers
        hidden = [torch.randn(250, width).to(dtype) for width in VAT_HIDDEN]
        contenders = {"fresh": lambda: [fresh(h) for h in hidden], "bank": lambda: [banked(h) for h in hidden]}
        results[f"noise_{str(dtype).removeprefix('torch.')}"] = interleaved(contenders, rounds=args.rounds)
    results["vat_entmin_step_bf16"] = interleaved(
        {"fresh": vat_entmin_step(0), "bank": vat_entmin_step(args.bank)}, rounds=args.rounds
    )
    print(f"{args.threads} threads, bank of {args.bank:,} values; medians, and fresh draws' time over the bank's")
    for name, seconds in results.items():
        ratio = seconds["fresh"] / seconds["bank"]
        print(
            f"  {name:22s} fresh {seconds['fresh'] * 1e3:7.2f} ms   bank {seconds['bank'] * 1e3:7.2f} ms   "
            f"{ratio:5.2f}x"
        )
    write(args.out, {**header(), "std": STD, "bank": args.bank, "seconds": results})


if __name__ == "__main__":
    main()
