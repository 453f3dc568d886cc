"""VAT step cost against a supervised step and against its floor, measured in one process.

The floor is the sum of the passes VAT cannot avoid, each timed alone in this run:
forward+backward to the parameters on the labelled batch; on the VAT batch a forward without
graph, a forward+backward to the input only, a forward+backward to the parameters; the optimizer
step. Timings are medians over interleaved repeats, so a noisy machine hurts all of them alike.

    python benchmarks/speed/vat_step.py [--repeats 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from semireg.methods import Batch, get_method
from semireg.methods.supervised import SupervisedOptions
from semireg.methods.vat import VATOptions, frozen_running_stats, kl_from_logits
from semireg.models import build_model


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench(model_name: str, b_l: int, b_u: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = build_model(model_name, (1, 28, 28), 10).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_l, y_l = torch.rand(b_l, 1, 28, 28), torch.randint(0, 10, (b_l,))
    x_u = torch.rand(b_u, 1, 28, 28)
    vat, sup = get_method("vat"), get_method("supervised")
    vat_opts, sup_opts = VATOptions(on="unlabeled"), SupervisedOptions()
    batch = Batch(x_l, y_l, x_u)
    with torch.no_grad():
        target = model(x_u)

    def full_step(spec, opts):
        def run():
            terms = spec.step(model, batch, opts)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()

        return run

    def labelled_fb():
        F.cross_entropy(model(x_l), y_l).backward()

    def unl_forward():
        with torch.no_grad():
            model(x_u)

    def unl_fb_input():
        r = (1.0 * torch.randn_like(x_u)).requires_grad_(True)
        with frozen_running_stats(model):
            torch.autograd.grad(kl_from_logits(target, model(x_u + r)).sum(), r)

    def unl_fb_params():
        with frozen_running_stats(model):
            kl_from_logits(target, model(x_u + 0.1 * torch.randn_like(x_u))).mean().backward()

    def opt_step():
        opt.step()

    parts = {
        "vat_step": full_step(vat, vat_opts),
        "sup_step": full_step(sup, sup_opts),
        "labelled_fb": labelled_fb,
        "unl_forward": unl_forward,
        "unl_fb_input": unl_fb_input,
        "unl_fb_params": unl_fb_params,
        "opt_step": opt_step,
    }
    for fn in parts.values():  # warm-up
        fn()
    samples = {k: [] for k in parts}
    for _ in range(repeats):  # interleaved: drift in machine speed hits every part alike
        for k, fn in parts.items():
            samples[k] += timed(fn, 1)
        opt.zero_grad(set_to_none=True)
    med = {k: statistics.median(v) for k, v in samples.items()}
    floor = sum(med[k] for k in ("labelled_fb", "unl_forward", "unl_fb_input", "unl_fb_params", "opt_step"))
    return {
        "vat_s": med["vat_step"],
        "sup_s": med["sup_step"],
        "floor_s": floor,
        "vat_over_sup": med["vat_step"] / med["sup_step"],
        "vat_over_floor": med["vat_step"] / floor,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {args.repeats} interleaved repeats"
    )
    print(f"{'model':12s} {'B_l':>4s} {'B_vat':>5s} {'VAT step/sup step':>18s} {'VAT step/floor':>15s}")
    worst = 0.0
    for model_name in ("cnn_keras", "cnn_bn"):
        for b_u in (128, 512):
            r = bench(model_name, 128, b_u, args.repeats)
            worst = max(worst, r["vat_over_floor"])
            print(f"{model_name:12s} {128:4d} {b_u:5d} {r['vat_over_sup']:18.2f} {r['vat_over_floor']:15.2f}")
    print(f"worst step/floor ratio: {worst:.2f}")


if __name__ == "__main__":
    main()
