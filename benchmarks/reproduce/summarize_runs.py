"""Final test metrics of finished run directories, grouped by config name: mean ± std over seeds.

    python benchmarks/reproduce/summarize_runs.py RUN_DIR [RUN_DIR ...]
    python benchmarks/reproduce/summarize_runs.py --errors RUN_DIR [RUN_DIR ...]

`--errors`: one row per run instead, with where its errors lie — validation and test accuracy, the lowest class
recall and the largest off-diagonal cell of the test confusion (a merge of two clusters shows there), train time
and wall minutes (figures.py's definition).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from figures import wall_minutes  # benchmarks/ is on sys.path when this script runs


def error_rows(runs: list[Path]) -> None:
    print(
        "| run | validation accuracy (%) | test accuracy (%) | lowest class recall (%) | largest confusion (test images) "
        "| train time (s) | wall min |"
    )
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        res = json.loads((run / "results.json").read_text())
        test = res["test"]
        confusion = test["confusion"]  # [true class][predicted class]
        recall = test["per_class"]["recall"]
        weakest = min(range(len(recall)), key=recall.__getitem__)
        count, true, predicted = max(
            (confusion[i][j], i, j) for i in range(len(confusion)) for j in range(len(confusion)) if i != j
        )
        val = f"{100 * res['val']['accuracy']:.2f}" if "val" in res else "—"
        print(
            f"| {run.parent.name}/{run.name} | {val} | {100 * test['accuracy']:.2f} | {100 * recall[weakest]:.1f} "
            f"({weakest}) | {count} ({true} as {predicted}) | {res['train_time_s']:.0f} | {wall_minutes(run):.1f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+", type=Path)
    ap.add_argument("--errors", action="store_true", help="one row per run: where its errors lie")
    args = ap.parse_args()
    if args.errors:
        error_rows(args.run_dirs)
        return
    groups: dict[str, list[dict]] = {}
    print("| run | seed | test accuracy | macro-F1 | train time (s) | s/epoch | git commit |")
    print("|---|---|---|---|---|---|---|")
    for run in args.run_dirs:
        cfg = json.loads((run / "config.json").read_text())
        meta = json.loads((run / "meta.json").read_text())
        res = json.loads((run / "results.json").read_text())
        row = {"acc": res["test"]["accuracy"], "f1": res["test"]["macro_f1"], "time": res["train_time_s"]}
        groups.setdefault(cfg["name"], []).append(row)
        print(
            f"| {cfg['name']} | {cfg['train']['seed']} | {row['acc']:.4f} | {row['f1']:.4f} | {row['time']:.0f} | "
            f"{res['time_per_epoch_s']} | {meta['code'].get('git_commit', '?')[:8]} |"
        )
    print()
    print("| config | runs | test accuracy (mean ± std) | macro-F1 (mean ± std) | train time per run (s, mean) |")
    print("|---|---|---|---|---|")
    for name, rows in groups.items():
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
        acc, f1 = [r["acc"] for r in rows], [r["f1"] for r in rows]
        print(
            f"| {name} | {len(rows)} | {100 * statistics.mean(acc):.2f} ± {100 * sd(acc):.2f} % | "
            f"{statistics.mean(f1):.4f} ± {sd(f1):.4f} | {statistics.mean(r['time'] for r in rows):.0f} |"
        )


if __name__ == "__main__":
    main()
