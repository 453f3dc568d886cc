"""The Gaussian noise layer of the VAT paper's MLP (`semireg.models.mlp.GaussianNoise`): a draw in the
activation's own dtype (`torch.randn_like`, what the layer did before) against the layer's draw in
float32 then cast, alone on the MLP's hidden activations and as part of a whole VAT + entropy-minimisation
step under bf16 autocast (the `mnist-100-pi` recipe's `vat-entmin` batch sizes, 100 + 250), timed in one
process in alternating rounds; prints medians and ratios.

    python benchmarks/speed/gaussian_noise.py [--threads 2] [--rounds 40] [--out FILE] [--profile]

`--profile`: also the share of the step's CPU time in `aten::normal_` (torch's profiler, 30 steps).
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


def draw_in_own_dtype(self: GaussianNoise, x: torch.Tensor) -> torch.Tensor:
    return x + self.std * torch.randn_like(x) if self.training else x


def vat_entmin_step(dtype: torch.dtype):
    torch.manual_seed(0)
    model = build_model("mlp", (1, 28, 28), 10, noise=STD).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, fused=True)
    batch = Batch(torch.rand(100, 1, 28, 28), torch.randint(0, 10, (100,)), torch.rand(250, 1, 28, 28))
    vat, opts = get_method("vat"), VATOptions(eps=5.0, on="unlabeled", entmin=0.3, probe="autocast")

    def run() -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            terms = vat.step(model, batch, opts)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()

    return run


def with_forward(forward, fn):
    """`fn` with GaussianNoise.forward swapped for `forward` while it runs."""

    def run() -> None:
        saved = GaussianNoise.forward
        GaussianNoise.forward = forward
        try:
            fn()
        finally:
            GaussianNoise.forward = saved

    return run


def normal_share(step, steps: int = 30) -> float:
    """The fraction of `steps` calls' self CPU time spent in aten::normal_."""
    from torch.profiler import profile

    with profile() as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key == "aten::normal_") / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--out", default=None)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    layer = GaussianNoise(STD).train()
    results: dict[str, dict[str, float]] = {}
    for dtype in (torch.bfloat16, torch.float32):
        # (250, width) for every hidden width: one pass of the unlabelled batch through the noise layers
        hidden = [torch.randn(250, width).to(dtype) for width in VAT_HIDDEN]
        contenders = {
            "own_dtype": lambda: [draw_in_own_dtype(layer, h) for h in hidden],
            "float32_cast": lambda: [layer(h) for h in hidden],
        }
        results[f"noise_{str(dtype).removeprefix('torch.')}"] = interleaved(contenders, rounds=args.rounds)
    step = vat_entmin_step(torch.bfloat16)
    results["vat_entmin_step_bf16"] = interleaved(
        {"own_dtype": with_forward(draw_in_own_dtype, step), "float32_cast": step}, rounds=args.rounds
    )
    print(f"{args.threads} threads; medians, and the own-dtype draw's time over the float32 draw's")
    for name, seconds in results.items():
        ratio = seconds["own_dtype"] / seconds["float32_cast"]
        print(
            f"  {name:22s} own dtype {seconds['own_dtype'] * 1e3:7.2f} ms   float32+cast "
            f"{seconds['float32_cast'] * 1e3:7.2f} ms   {ratio:5.2f}x"
        )
    shares = {}
    if args.profile:
        shares = {"own_dtype": normal_share(with_forward(draw_in_own_dtype, step)), "float32_cast": normal_share(step)}
        print("  share of the step in aten::normal_: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    write(args.out, {**header(), "std": STD, "seconds": results, "normal_share": shares})


if __name__ == "__main__":
    main()
