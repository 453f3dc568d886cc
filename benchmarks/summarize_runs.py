"""Final test metrics of finished run directories, grouped by config name: mean ± std over seeds.

    python benchmarks/summarize_runs.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+", type=Path)
    args = ap.parse_args()
    groups: dict[str, list[dict]] = {}
    print("| run | seed | test accuracy | macro-F1 | train time (s) | s/epoch | git commit |")
    print("|---|---|---|---|---|---|---|")
    for run in args.run_dirs:
        cfg = json.loads((run / "config.json").read_text())
        meta = json.loads((run / "meta.json").read_text())
        res = json.loads((run / "results.json").read_text())
        row = {"acc": res["test"]["accuracy"], "f1": res["test"]["macro_f1"], "time": res["train_time_s"]}
        groups.setdefault(cfg["name"], []).append(row)
        print(f"| {cfg['name']} | {cfg['train']['seed']} | {row['acc']:.4f} | {row['f1']:.4f} | {row['time']:.0f} | "
              f"{res['time_per_epoch_s']} | {meta['code'].get('git_commit', '?')[:8]} |")
    print()
    print("| config | runs | test accuracy (mean ± std) | macro-F1 (mean ± std) | train time per run (s, mean) |")
    print("|---|---|---|---|---|")
    for name, rows in groups.items():
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
        acc, f1 = [r["acc"] for r in rows], [r["f1"] for r in rows]
        print(f"| {name} | {len(rows)} | {100 * statistics.mean(acc):.2f} ± {100 * sd(acc):.2f} % | "
              f"{statistics.mean(f1):.4f} ± {sd(f1):.4f} | {statistics.mean(r['time'] for r in rows):.0f} |")


if __name__ == "__main__":
    main()
