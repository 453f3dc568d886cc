"""Clean and corrupted accuracy of finished run directories, from their robustness.json files.

    python benchmarks/reproduce/robustness_table.py RUN_DIR [RUN_DIR ...]

Percentages. `clean (n)` is the clean accuracy on the same n test images the corruptions used;
`test` is the run's accuracy on the whole test set (results.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+", type=Path)
    args = ap.parse_args()
    print(
        "| run | test (10k) | clean (n) | mean 15x5 | mCE | 15x5 / clean | mean 19 @ sev 5 | 19@5 / clean | evaluated weights | train time (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in args.run_dirs:
        res = json.loads((run / "results.json").read_text())
        rob = json.loads((run / "robustness.json").read_text())
        s = rob["summary"]
        print(
            f"| {run} | {pct(res['test']['accuracy'])} | {pct(s['clean'])} ({rob['n_images']}) | {pct(s['mean_c15'])} | "
            f"{pct(s['mce_c15'])} | {pct(s['mean_c15_relative'])} | {pct(s['mean_c19_s5'])} | {pct(s['mean_c19_s5_relative'])} | "
            f"{res['evaluated_weights']} | {res['train_time_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
