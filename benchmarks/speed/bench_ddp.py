"""Data-parallel scaling: images/s of 2 processes (gloo on CPU, NCCL on GPUs) against 1 process at
the same per-process batch, measured in one invocation (alternating rounds). On CPU each process
gets `--threads` threads; a 1-process run with 2 x threads and the doubled batch is shown as well,
because on a 2-core machine that is the alternative a user actually has.

    python benchmarks/speed/bench_ddp.py --recipe mnist-100-vat-entmin --steps 60 --out benchmarks/results/ddp-cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _timing
from _timing import header, write

from semireg.config import config_for, load_recipe
from semireg.engine import train


def images_per_second(
    recipe: str, steps: int, per_process_batch: int, unlabeled_per_process: int, devices: int, threads: int
) -> float:
    overrides = {
        "train.steps": steps,
        "train.eval_every": 0,
        "train.log_every": 20,
        "train.progress": False,
        "train.threads": threads,
        "train.devices": devices,
        "train.batch_size": per_process_batch * devices,
        "train.unlabeled_batch_size": unlabeled_per_process * devices,
    }
    cfg = config_for(load_recipe(recipe), "", 0, overrides)
    seconds = float(train(cfg).metrics["train_time_s"])
    return steps * (per_process_batch + unlabeled_per_process) * devices / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="mnist-100-vat-entmin")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=32, help="labelled images per process per step")
    p.add_argument("--unlabeled", type=int, default=64, help="unlabelled images per process per step")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="")
    args = p.parse_args()
    runs: dict[str, list[float]] = {"1 process": [], "2 processes": [], "1 process, 2x threads, 2x batch": []}
    for _ in range(args.rounds):
        runs["1 process"].append(
            images_per_second(args.recipe, args.steps, args.batch, args.unlabeled, 1, args.threads)
        )
        runs["2 processes"].append(
            images_per_second(args.recipe, args.steps, args.batch, args.unlabeled, 2, args.threads)
        )
        runs["1 process, 2x threads, 2x batch"].append(
            images_per_second(args.recipe, args.steps, 2 * args.batch, 2 * args.unlabeled, 1, 2 * args.threads)
        )
    medians = {k: statistics.median(v) for k, v in runs.items()}
    for k, v in medians.items():
        print(f"{k:<34} {v:9.1f} images/s")
    ratio = medians["2 processes"] / medians["1 process"]
    print(f"2 processes / 1 process (same per-process batch): {ratio:.2f}x")
    print(
        f"2 processes / 1 process with 2x threads: {medians['2 processes'] / medians['1 process, 2x threads, 2x batch']:.2f}x"
    )
    write(
        args.out,
        {"header": header(), "args": vars(args), "images_per_s": runs, "median": medians, "two_over_one": ratio},
    )


if __name__ == "__main__":
    main()
