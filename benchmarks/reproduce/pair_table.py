"""Runs side by side at each evaluation step, from their metrics.jsonl: test accuracy (%), training minutes
(the eval record's `time`: evaluations and checkpoint writing not counted), and from the train record at that
step the training accuracy on labelled batches and, for threshold methods, the mask rate. The docs' tables of
the issue-18 crossing pairs are this script's output.

    python benchmarks/reproduce/pair_table.py RUN_DIR [RUN_DIR ...] [--plot OUT.png] [--final]

`--final`: one row per run instead, at its last evaluation (for tables of many runs).

Unfinished runs are read as far as they got (`semireg compare` takes finished runs only); `--plot` draws `semireg
compare`'s curves (test accuracy against step and against training time), one line per run, one colour per recipe.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from semireg.report.compare import Group, plot_eval_curves
from semireg.rundir import read_jsonl


def records(run: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """(test eval record by step, train record by step) of one run."""
    evals, trains = {}, {}
    for rec in read_jsonl(run / "metrics.jsonl"):
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


def label(run: Path) -> str:
    """A run's name; a seed directory (runs/.../<recipe>/seed1) is named with its recipe."""
    return f"{run.parent.name}/{run.name}" if run.name.startswith("seed") else run.name


def final_rows(runs: list[Path], per_run: list[tuple[dict, dict]]) -> None:
    print("| run | step | test % (training min) | train acc. % | mask % |")
    print("|---|---|---|---|---|")
    for run, (evals, trains) in zip(runs, per_run):
        if evals:
            step = max(evals)
            print(f"| {label(run)} | {step} | {cell(evals, trains, step)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--plot", type=Path, help="also draw the curves into this PNG")
    ap.add_argument("--final", action="store_true", help="one row per run, at its last evaluation")
    args = ap.parse_args()
    per_run = [records(run) for run in args.runs]
    if args.plot:  # compare's own curves, one colour per recipe (compare itself takes finished runs only)
        by_recipe: dict[str, list[Path]] = {}
        for run in args.runs:
            by_recipe.setdefault(label(run).split("/")[0], []).append(run)
        plot_eval_curves([Group(label=name, config_hash="", runs=runs) for name, runs in by_recipe.items()], args.plot)
    if args.final:
        final_rows(args.runs, per_run)
        return
    steps = sorted({step for evals, _ in per_run for step in evals})
    header = " | ".join(f"{label(run)}: test % (training min) | train acc. % | mask %" for run in args.runs)
    print(f"| step | {header} |")
    print("|---|" + "---|---|---|" * len(args.runs))
    for step in steps:
        print(f"| {step} | " + " | ".join(cell(evals, trains, step) for evals, trains in per_run) + " |")


if __name__ == "__main__":
    main()
