"""Runs side by side at each evaluation step, from their metrics.jsonl: test accuracy (%), training minutes
(the eval record's `time`: evaluations and checkpoint writing not counted), and from the train record at that
step the training accuracy on labelled batches and, for threshold methods, the mask rate. The docs' tables of
the issue-18 crossing pairs are this script's output.

    python benchmarks/pair_table.py RUN_DIR [RUN_DIR ...] [--plot OUT.png]

Unfinished runs are read as far as they got (`semireg compare` takes finished runs only); `--plot` draws test
accuracy against step and against training minutes, one line per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def records(run: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """(test eval record by step, train record by step) of one run."""
    evals, trains = {}, {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "eval" and rec.get("split", "test") == "test":
            evals[rec["step"]] = rec
        elif rec.get("kind") == "train":
            trains[rec["step"]] = rec
    return evals, trains


def cell(evals: dict[int, dict], trains: dict[int, dict], step: int) -> str:
    if step not in evals:
        return "— | — | —"
    ev, tr = evals[step], trains.get(step, {})
    mask = f"{100 * tr['mask']:.0f}" if "mask" in tr else "—"
    train_acc = f"{100 * tr['train_acc']:.0f}" if "train_acc" in tr else "—"
    return f"{100 * ev['accuracy']:.2f} ({ev['time'] / 60:.1f}) | {train_acc} | {mask}"


def plot(runs: list[Path], per_run: list[tuple[dict, dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for run, (evals, _) in zip(runs, per_run):
        steps = sorted(evals)
        accuracy = [100 * evals[s]["accuracy"] for s in steps]
        axes[0].plot(steps, accuracy, marker="o", ms=3, label=run.name)
        axes[1].plot([evals[s]["time"] / 60 for s in steps], accuracy, marker="o", ms=3, label=run.name)
    axes[0].set(xlabel="step", ylabel="test accuracy (%)")
    axes[1].set(xlabel="training minutes (evaluations not counted)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--plot", type=Path, help="also draw the curves into this PNG")
    args = ap.parse_args()
    per_run = [records(run) for run in args.runs]
    if args.plot:
        plot(args.runs, per_run, args.plot)
    steps = sorted({step for evals, _ in per_run for step in evals})
    header = " | ".join(f"{run.name}: test % (training min) | train acc. % | mask %" for run in args.runs)
    print(f"| step | {header} |")
    print("|---|" + "---|---|---|" * len(args.runs))
    for step in steps:
        print(f"| {step} | " + " | ".join(cell(evals, trains, step) for evals, trains in per_run) + " |")


if __name__ == "__main__":
    main()
