"""Training-step cost of every method, against (1) its floor and (2) for VAT and FixMatch, a
reference step written the common way. All ratios come from one process, measured in alternating
rounds (benchmarks/_timing.py).

A step is what the engine does per iteration minus sampling, augmentation and logging: the method's
step function, zero_grad, backward, optimizer step. Inputs are pre-made (a fixed strong view), so
augmentation is in neither side.

Floor: the passes a method cannot avoid, each timed alone in the same run and summed:
  F0(n)   forward without a graph (targets: a weak view, the EMA teacher, VAT's clean prediction)
  FB(n)   forward with a graph + backward into the parameters (one backward over all of them)
  FX(n)   forward + gradient with respect to the input only (one VAT power iteration)
  OPT     zero_grad + optimizer step

    python benchmarks/speed/bench_steps.py --threads 2 --rounds 15 --out benchmarks/results/steps-cpu.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _timing
from _timing import header, interleaved, write

from semireg.methods import METHODS, Batch, get_method
from semireg.models import build_model

# Each method's unavoidable passes, in units of the labelled batch B and unlabelled batch U.
FLOORS = {
    "supervised": [("FB", "B")],
    "vat": [("F0", "U"), ("FX", "U"), ("FB", "B+U")],  # clean target, power iteration, CE + adversarial pass
    "fixmatch": [("F0", "U"), ("FB", "B+U")],  # weak view without a graph; labelled + strong in one pass
    "flexmatch": [("F0", "U"), ("FB", "B+U")],
    "freematch": [("F0", "U"), ("FB", "B+U")],
    "uda": [("F0", "U"), ("FB", "B+U")],
    "pseudolabel": [("FB", "B+U")],
    "pimodel": [("F0", "U"), ("FB", "B+U")],
    "meanteacher": [("F0", "U"), ("FB", "B+U")],  # the EMA teacher's pass, then the student's
    "consistency": [("F0", "B"), ("FB", "B")],  # the frozen teacher, then the student (labelled only)
}


def options(name: str):
    opts = get_method(name).options()
    if hasattr(opts, "threshold"):  # an untrained model passes no 0.95 threshold: keep every term active
        opts = dataclasses.replace(opts, threshold=0.0)
    return opts


def make_batch(name, model, x_l, y_l, x_u, x_s):
    spec = get_method(name)
    opts = options(name)
    other = copy.deepcopy(model).eval().requires_grad_(False)
    state = spec.make_state(opts, 10, len(x_u)) if spec.make_state else None
    return opts, Batch(
        x_l=x_l,
        y_l=y_l,
        x_u=x_u if spec.uses_unlabeled(opts) else None,
        strong=lambda v: x_s[: len(v)],
        weak=lambda v: v,
        x_u_raw=x_u,
        idx_u=torch.arange(len(x_u)),
        teacher=other if spec.needs_teacher else None,
        ema=other if spec.needs_ema else None,
        state=state,
        progress=0.5,
    )


def semireg_step(name, model, optimizer, batch, opts):
    step = get_method(name).step

    def run():
        terms = step(model, batch, opts)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

    return run


def floor_passes(model, optimizer, x_l, x_u):
    def inputs(which):
        return {"B": x_l, "U": x_u, "B+U": torch.cat([x_l, x_u])}[which]

    def f0(which):
        x = inputs(which)

        def run():
            with torch.no_grad():
                model(x)

        return run

    def fb(which):
        x = inputs(which)

        def run():
            model(x).logsumexp(1).mean().backward()

        return run

    def fx(which):
        x = inputs(which)

        def run():
            r = torch.zeros_like(x, requires_grad=True)
            torch.autograd.grad(model(x + r).logsumexp(1).sum(), r)

        return run

    def opt():
        optimizer.zero_grad(set_to_none=False)
        optimizer.step()

    passes = {
        f"{kind}({which})": {"F0": f0, "FB": fb, "FX": fx}[kind](which)
        for floor in FLOORS.values()
        for kind, which in floor
    }
    passes["OPT"] = opt
    return passes


# ----------------------------------------------------------------------------- reference steps


def _numpy_l2_normalize(d: torch.Tensor) -> torch.Tensor:
    """Per-sample unit norm through numpy, as USB's VAT does (a host round trip)."""
    a = d.cpu().numpy()
    a /= np.sqrt((a**2).sum(axis=(1, 2, 3))).reshape(-1, 1, 1, 1) + 1e-16
    return torch.from_numpy(a).to(d.device)


def reference_vat_step(model, optimizer, x_l, y_l, x_u, *, xi=1e-6, eps=2.5):
    """The common way (USB's vat.py): the clean unlabelled forward kept with a graph, BatchNorm
    buffers saved and restored by copy, the power iteration's backward() into the parameters,
    zero_grad after it, normalisation through numpy."""

    def run():
        logits_l = model(x_l)
        logits_u = model(x_u)  # with a graph, though only ever used as a constant target
        saved = [(b, b.detach().clone()) for b in model.buffers()]  # USB's bn_controller.freeze_bn
        d = _numpy_l2_normalize(torch.randn_like(x_u)) * xi
        d.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(x_u + d), 1), F.softmax(logits_u.detach(), 1), reduction="batchmean")
        kl.backward(retain_graph=True)
        d = _numpy_l2_normalize(d.grad)
        model.zero_grad()
        adv = model(x_u + eps * d.detach())
        for b, value in saved:  # bn_controller.unfreeze_bn
            b.data = value
        lds = F.kl_div(F.log_softmax(adv, 1), F.softmax(logits_u.detach(), 1), reduction="batchmean")
        loss = F.cross_entropy(logits_l, y_l) + lds
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return run


def reference_fixmatch_step(model, optimizer, x_l, y_l, x_u, x_s, *, threshold=0.0):
    """The common way: every view in one forward with a graph, the weak logits detached afterwards."""

    def run():
        logits = model(torch.cat([x_l, x_u, x_s]))
        n_l, n_u = len(x_l), len(x_u)
        logits_l, logits_w, logits_s = logits[:n_l], logits[n_l : n_l + n_u], logits[n_l + n_u :]
        probs = F.softmax(logits_w.detach(), 1)
        confidence, pseudo = probs.max(1)
        mask = (confidence >= threshold).float()
        unsup = (F.cross_entropy(logits_s, pseudo, reduction="none") * mask).mean()
        loss = F.cross_entropy(logits_l, y_l) + unsup
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cnn_bn")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--unlabeled", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--methods", default=",".join(sorted(METHODS)))
    p.add_argument("--out", default="")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model, (1, 28, 28), 10).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x_l, y_l = torch.rand(args.batch, 1, 28, 28), torch.arange(args.batch) % 10
    x_u, x_s = torch.rand(args.unlabeled, 1, 28, 28), torch.rand(args.unlabeled, 1, 28, 28)

    methods = [m for m in args.methods.split(",") if m]
    contenders = floor_passes(model, optimizer, x_l, x_u)
    for name in methods:
        opts, batch = make_batch(name, model, x_l, y_l, x_u, x_s)
        contenders[f"step:{name}"] = semireg_step(name, model, optimizer, batch, opts)
    contenders["reference:vat"] = reference_vat_step(model, optimizer, x_l, y_l, x_u)
    contenders["reference:fixmatch"] = reference_fixmatch_step(model, optimizer, x_l, y_l, x_u, x_s)
    seconds = interleaved(contenders, rounds=args.rounds)

    rows = []
    print(f"{'method':<12} {'step s':>8} {'floor s':>8} {'step/floor':>10}")
    for name in methods:
        floor = sum(seconds[f"{kind}({which})"] for kind, which in FLOORS[name]) + seconds["OPT"]
        ratio = seconds[f"step:{name}"] / floor
        rows.append({"method": name, "step_s": seconds[f"step:{name}"], "floor_s": floor, "step_over_floor": ratio})
        print(f"{name:<12} {seconds[f'step:{name}']:8.4f} {floor:8.4f} {ratio:10.3f}")
    speedups = {m: seconds[f"reference:{m}"] / seconds[f"step:{m}"] for m in ("vat", "fixmatch") if m in methods}
    for m, s in speedups.items():
        print(
            f"reference {m} step / semireg {m} step: {s:.2f}x  ({seconds[f'reference:{m}']:.4f} s vs {seconds[f'step:{m}']:.4f} s)"
        )
    write(
        args.out,
        {
            "header": header(),
            "args": vars(args),
            "seconds": seconds,
            "floors": rows,
            "speedup_over_reference": speedups,
        },
    )


if __name__ == "__main__":
    main()
