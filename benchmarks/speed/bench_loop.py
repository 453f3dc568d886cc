"""Loop efficiency: images/s of the full training loop (`semireg.engine.train`: sampling,
augmentation, the step, EMA, logging) over images/s of the bare step on pre-made batches (the
method's step function, zero_grad, backward, optimizer and scheduler step; nothing else).

Both run the same recipe, model, batch sizes and number of steps in one process, in alternating
rounds. Evaluation is outside both (the engine's train_time_s excludes it).

    python benchmarks/speed/bench_loop.py --steps 40 --rounds 2 --out benchmarks/results/loop-cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _timing
from _timing import header, write

from semireg.augment import Augmenter
from semireg.config import config_for, load_recipe, method_options
from semireg.data import IndexSampler
from semireg.engine import train, unlabeled_batch_size
from semireg.finished import model_from_config
from semireg.methods import Batch, get_method
from semireg.optim import build_optimizer, lr_factor
from semireg.traindata import data_from_config

STRONG_AUGMENTATION = {"fixmatch", "flexmatch", "freematch", "uda", "consistency"}  # RandAugment in the loop
SECOND_WEAK_VIEW = {"pimodel", "meanteacher"}  # a second weak view drawn inside the step
RECIPES = [
    "mnist-100-ssl",
    "mnist-100-vat-entmin",
    "mnist-100-meanteacher",
    "mnist-100-fixmatch",
    "mnist-100-freematch",
]


def recipe_config(name: str, steps: int, threads: int):
    overrides = {
        "train.steps": steps,
        "train.eval_every": 0,
        "train.log_every": 10,
        "train.progress": False,
        "train.threads": threads,
    }
    return config_for(load_recipe(name), "", 0, overrides)


def loop_seconds(cfg, data, split) -> float:
    return float(train(cfg, data=data, split=split).metrics["train_time_s"])


def bare_seconds(cfg, data) -> float:
    """The same steps on batches augmented before the clock starts."""
    t = cfg.train
    spec, opts = get_method(cfg.method["name"]), method_options(cfg)
    torch.manual_seed(t.seed)  # as the engine seeds before building the model
    model = model_from_config(cfg, data).train()
    optimizer = build_optimizer(model.parameters(), cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, t.steps))
    # The loop's own seeds and order of draws, so that the bare steps see exactly the loop's
    # batches and views and follow the same trajectory (step costs depend on it a little).
    augmenter = Augmenter(cfg.augment, "cpu", seed=t.seed * 2 + 3)
    uses_u = spec.uses_unlabeled(opts)
    lab = IndexSampler(len(data.y_l), t.batch_size, seed=t.seed * 2 + 1)
    unl = IndexSampler(len(data.x_u), unlabeled_batch_size(cfg, spec.mu), seed=t.seed * 2 + 2) if uses_u else None
    ema = None
    if spec.needs_ema:
        import copy

        ema = copy.deepcopy(model).eval().requires_grad_(False)
    state = spec.make_state(opts, data.num_classes, len(data.x_u)) if spec.make_state else None
    name = cfg.method["name"]
    batches = []
    for step in range(t.steps):
        idx, idx_u = lab.next(), unl.next() if unl else None
        x_l = augmenter.weak(data.x_l[idx])
        x_u_raw = data.x_u[idx_u] if uses_u else None
        x_u = augmenter.weak(x_u_raw) if uses_u else None
        strong = augmenter.strong(x_u) if name in STRONG_AUGMENTATION else None
        second = augmenter.weak(x_u_raw) if name in SECOND_WEAK_VIEW else None
        batches.append(
            Batch(
                x_l=x_l,
                y_l=data.y_l[idx],
                x_u=x_u,
                strong=(lambda v, s=strong: s),
                weak=(lambda v, w=second: w),
                x_u_raw=x_u_raw,
                idx_u=idx_u,
                ema=ema,
                state=state,
                progress=step / t.steps,
            )
        )
    start = time.perf_counter()
    for batch in batches:
        terms = spec.step(model, batch, opts)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        scheduler.step()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.recipes.split(","):
        cfg = recipe_config(name, args.steps, args.threads)
        data, split = data_from_config(cfg)
        strong = cfg.method["name"] in STRONG_AUGMENTATION
        loops, bares = [], []
        for _ in range(args.rounds):
            loops.append(loop_seconds(cfg, data, split))
            bares.append(bare_seconds(cfg, data))
        # Median of the per-round ratios, and fastest over fastest (machine noise only ever slows a run).
        efficiency = statistics.median(b / loop for b, loop in zip(bares, loops))
        best = min(bares) / min(loops)
        goal = 0.9 if strong else 0.95
        rows.append(
            {
                "recipe": name,
                "method": cfg.method["name"],
                "loop_s": loops,
                "bare_s": bares,
                "efficiency": efficiency,
                "efficiency_best": best,
                "goal": goal,
                "strong_augmentation": strong,
            }
        )
        print(
            f"{name:<24} loop {statistics.median(loops):7.2f} s  bare {statistics.median(bares):7.2f} s  "
            f"efficiency {efficiency:.3f} (median of rounds), {best:.3f} (fastest/fastest)  goal >= {goal}",
            flush=True,
        )
    write(args.out, {"header": header(), "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
