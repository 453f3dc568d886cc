"""Step time of semireg's models and method steps under each precision / memory format, in one
process, interleaved (round r runs every contender once), medians; with the achieved TFLOP/s of
each step against a bf16 matmul peak measured in the same process.

Model steps (forward + backward + SGD on random inputs of the recipe's shape): fp32,
fp32 + channels_last, bf16 autocast, bf16 + channels_last (and `--compile`: bf16 + channels_last +
torch.compile). Method steps, built from the recipes a user runs (their options, batch sizes and
augmentation): `mnist-100-vat` variant vat, `cifar10-4000-fixmatch`, `cifar10-consistency-cpu`'s
student, under fp32 (`precision=32-true channels_last=false`) and under the defaults ("auto"); and
VAT under the defaults but with its power iteration in bf16 (`method.probe=autocast method.xi=0.3`).

    python benchmarks/speed/precision.py [--quick] [--rounds 5] [--threads 2] [--compile] [--out FILE]

`--quick` (under 60 s here) times wrn28_2, cnn_bn and the VAT step only, with smaller batches.
The last line is `auto/fp32 speed-up: wrn28_2 X.XX, cnn_bn Y.YY, vat_step Z.ZZ`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _timing
from _timing import header, interleaved, write

from semireg import hardware
from semireg.augment import Augmenter
from semireg.config import config_for, load_recipe, method_options
from semireg.engine import unlabeled_batch_size
from semireg.methods import Batch, get_method
from semireg.models import build_model

# model -> (input shape, batch, quick batch): the batch of the recipes that use it, or near it.
MODELS = {
    "cnn_bn": ((1, 28, 28), 640, 256),  # mnist-100-vat: 100 + 128 + VAT's passes over 128
    "cnn_small": ((3, 32, 32), 512, 256),
    "wrn28_2": ((3, 32, 32), 128, 64),
    "preact_resnet18": ((3, 32, 32), 64, 32),
}
QUICK_MODELS = ("wrn28_2", "cnn_bn")
# name -> (recipe, variant, stage, model input shape, overrides of the "auto" contender)
METHOD_STEPS = {
    "vat_step": ("mnist-100-vat", "vat", "", (1, 28, 28), {}),
    "vat_step_bf16_probe": ("mnist-100-vat", "vat", "", (1, 28, 28), {"method.probe": "autocast", "method.xi": 0.3}),
    "fixmatch_step": ("cifar10-4000-fixmatch", "", "", (3, 32, 32), {}),
    "consistency_student_step": ("cifar10-consistency-cpu", "swa", "student", (3, 32, 32), {}),
}
FP32 = {"train.precision": "32-true", "train.channels_last": False}


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def matmul_peak(bf16: bool, n: int = 4096, repeats: int = 7) -> float:
    """TFLOP/s of an n x n matmul, the fastest of `repeats` calls: the machine's practical peak for
    dense work in that dtype (the fastest call, because a peak is what the machine can do, and a
    shared machine's slow calls measure its neighbours)."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def model_step(name: str, batch: int, bf16: bool, channels_last: bool, compiled: bool = False) -> Callable[[], None]:
    shape = MODELS[name][0]
    torch.manual_seed(0)
    model = build_model(name, shape, 10).train()
    x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))  # (B, C, H, W), (B,)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        with autocast(bf16):
            loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def method_step(name: str, overrides: dict, quick: bool) -> Callable[[], None]:
    """One step of the method exactly as its recipe configures it (random inputs of its shape)."""
    recipe_name, variant, stage, shape, _ = METHOD_STEPS[name]
    recipe = load_recipe(recipe_name)
    cfg = config_for(
        recipe,
        variant,
        0,
        {"train.progress": False, **overrides},
        stage,
        teacher_dirs={n: "-" for n, _ in recipe.stages},
    )
    spec, opts = get_method(cfg.method["name"]), method_options(cfg)
    precision = hardware.resolve_precision(cfg.train.precision, "cpu").value
    torch.manual_seed(0)
    model = build_model(cfg.model.name, shape, 10, dropout=cfg.model.dropout, hidden=cfg.model.hidden).train()
    channels_last = hardware.resolve_channels_last(cfg.train.channels_last, model, len(shape) + 1).value
    b_l = cfg.train.batch_size // (2 if quick else 1)
    b_u = unlabeled_batch_size(cfg, spec.mu) // (2 if quick else 1)
    fmt = (lambda t: t.contiguous(memory_format=torch.channels_last)) if channels_last else (lambda t: t)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    aug = Augmenter(cfg.augment, "cpu", seed=0)
    x_l, y_l, x_u = torch.rand(b_l, *shape), torch.randint(0, 10, (b_l,)), torch.rand(b_u, *shape)
    teacher = (
        build_model(cfg.model.name, shape, 10, dropout=cfg.model.dropout, hidden=cfg.model.hidden).eval()
        if spec.needs_teacher
        else None
    )
    state = spec.make_state(opts, 10, b_u).to("cpu") if spec.make_state is not None else None
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        batch = Batch(
            x_l=fmt(aug.weak(x_l)),
            y_l=y_l,
            x_u=fmt(aug.weak(x_u)) if spec.uses_unlabeled(opts) else None,
            strong=aug.strong,
            teacher=teacher,
            weak=aug.weak,
            x_u_raw=x_u,
            idx_u=torch.arange(b_u),
            state=state,
            progress=0.5,
        )
        with autocast(precision == "bf16-mixed"):
            terms = spec.step(model, batch, opts)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()

    return step


def flops_of(step: Callable[[], None]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time bf16 + channels_last + torch.compile")
    ap.add_argument(
        "--out", default=None, help="JSON file (default: benchmarks/results/precision-cpu.json; none with --quick)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else args.rounds
    peak = {"bf16": matmul_peak(True), "fp32": matmul_peak(False)}
    auto = hardware.resolve_precision("auto", "cpu")
    print(
        f"matmul 4096^2: bf16 {peak['bf16']:.2f} TFLOP/s, fp32 {peak['fp32']:.2f}; auto precision here: "
        f"{auto.value} ({auto.reason})",
        flush=True,
    )
    results: dict[str, dict] = {"header": header(), "peak_tflops": peak, "auto_precision": vars(auto), "rounds": rounds}
    auto_bf16 = auto.value == "bf16-mixed"
    for name in QUICK_MODELS if args.quick else MODELS:
        _, batch, quick_batch = MODELS[name]
        b = quick_batch if args.quick else batch
        modes = {"fp32": (False, False), "fp32+cl": (False, True), "bf16": (True, False), "bf16+cl": (True, True)}
        steps = {mode: model_step(name, b, *flags) for mode, flags in modes.items()}
        if args.compile:
            steps["bf16+cl+compile"] = model_step(name, b, True, True, compiled=True)
        flops = flops_of(steps["fp32"])
        times = interleaved(steps, rounds=rounds, warmup=2)
        auto_mode = "bf16+cl" if auto_bf16 else "fp32+cl"
        results[name] = {
            "batch": b,
            "seconds": times,
            "gflop_per_image": flops / b / 1e9,
            "speedup": {m: times["fp32"] / t for m, t in times.items()},
            "auto": auto_mode,
            "auto_speedup": times["fp32"] / times[auto_mode],
            "peak_fraction": {
                m: flops / t / 1e12 / peak["bf16" if m.startswith("bf16") else "fp32"] for m, t in times.items()
            },
        }
        r = results[name]
        print(
            f"{name:16s} batch {b:4d}  "
            + "  ".join(f"{m} {s:.2f}x" for m, s in r["speedup"].items())
            + f"  | {r['gflop_per_image']:.3f} GFLOP/image, {auto_mode} at "
            f"{flops / times[auto_mode] / 1e12:.2f} TFLOP/s = {100 * r['peak_fraction'][auto_mode]:.0f} % of the "
            f"{'bf16' if auto_bf16 else 'fp32'} matmul peak",
            flush=True,
        )
    for name in ("vat_step",) if args.quick else METHOD_STEPS:
        steps = {
            "fp32": method_step(name, FP32, args.quick),
            "auto": method_step(name, METHOD_STEPS[name][4], args.quick),
        }
        flops = flops_of(steps["fp32"])
        times = interleaved(steps, rounds=rounds, warmup=2)
        results[name] = {
            "seconds": times,
            "auto_speedup": times["fp32"] / times["auto"],
            "gflop": flops / 1e9,
            "auto_peak_fraction": flops / times["auto"] / 1e12 / peak["bf16" if auto_bf16 else "fp32"],
        }
        print(
            f"{name:24s} fp32 {times['fp32']:.3f} s, auto {times['auto']:.3f} s: {results[name]['auto_speedup']:.2f}x"
            f"  ({flops / 1e9:.1f} GFLOP, auto at {100 * results[name]['auto_peak_fraction']:.0f} % of peak)",
            flush=True,
        )
    write(args.out or (None if args.quick else "benchmarks/results/precision-cpu.json"), results)
    print(
        "auto/fp32 speed-up: "
        + ", ".join(f"{k} {results[k]['auto_speedup']:.2f}" for k in ("wrn28_2", "cnn_bn", "vat_step"))
    )


if __name__ == "__main__":
    main()
