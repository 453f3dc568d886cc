"""Training wall time until a run's evaluation metric first reaches a target.

Reads RUN_DIR/metrics.jsonl: the `time` of an eval record is the training time so far (seconds,
evaluation and checkpoint writing excluded).

    python benchmarks/speed/time_to_accuracy.py RUN_DIR [RUN_DIR ...] [--metric macro_f1] [--target 0.97]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def first_reach(run_dir: Path, metric: str, target: float, split: str = "test") -> tuple[int, float] | None:
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "eval" and rec.get("split") == split and rec.get(metric, -1) >= target:
            return rec["step"], rec["time"]
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+", type=Path)
    ap.add_argument("--metric", default="macro_f1")
    ap.add_argument("--target", type=float, default=0.97)
    args = ap.parse_args()
    for run_dir in args.run_dirs:
        hit = first_reach(run_dir, args.metric, args.target)
        if hit is None:
            print(f"{run_dir}: never reached {args.metric} >= {args.target}")
        else:
            print(
                f"{run_dir}: {args.metric} >= {args.target} at step {hit[0]}, after {hit[1]:.0f} s ({hit[1] / 60:.1f} min) of training"
            )


if __name__ == "__main__":
    main()
