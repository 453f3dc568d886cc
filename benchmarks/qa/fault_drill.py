"""Long fault drill: train a deterministic CPU run while killing it with SIGKILL at random steps,
resuming after each kill, over several trials; every trial must end bit-identical (weights,
optimizer, EMA, sampler and RNG states, every logged value) to one uninterrupted run. The
short form of this drill is tests/test_faults.py.

    python benchmarks/qa/fault_drill.py --trials 5 --kills 8 --steps 600 --out benchmarks/results/fault-drill.json
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _timing
from _timing import header, write

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # the drill lives with the tests
from faults import compare_runs, interrupted_run, run_uninterrupted


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--kills", type=int, default=8, help="kills attempted per trial")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seed", type=int, default=0, help="seeds the random kill steps (trial t uses seed + t)")
    p.add_argument("--out", default="")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="semireg-drill-"))
    start = time.perf_counter()
    try:
        run_uninterrupted(root / "reference", args.steps)
        trials = []
        for t in range(args.trials):
            drill = interrupted_run(root / f"trial{t}", args.steps, args.kills, seed=args.seed + t)
            drill = compare_runs(root / "reference", root / f"trial{t}", drill)
            trials.append(drill.to_dict())
            print(
                f"trial {t}: {len(drill.kills)} kills at steps {[k.logged_step for k in drill.kills]}, "
                f"resumed from {[k.checkpoint_step for k in drill.kills]}; identical={drill.identical} "
                f"metrics_identical={drill.metrics_identical} {drill.differing[:5]}",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    kills = sum(len(t["kills"]) for t in trials)
    summary = {
        "trials": len(trials),
        "kills": kills,
        "steps": args.steps,
        "identical": sum(t["identical"] and t["metrics_identical"] for t in trials),
        "kills_during_checkpoint_write": sum(k["tmp_left"] for t in trials for k in t["kills"]),
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(summary)
    if args.out:
        write(
            args.out,
            {
                **header(),
                "command": "python benchmarks/qa/fault_drill.py "
                + " ".join(f"--{k} {v}" for k, v in vars(args).items() if k != "out"),
                "summary": summary,
                "trials": trials,
            },
        )


if __name__ == "__main__":
    main()
