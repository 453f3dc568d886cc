"""Long fuzzing: tests/test_fuzz.py with many random (not derandomised) examples per target.
Prints, per target, how many inputs were tried and whether anything but a SemiregError escaped.

    python benchmarks/qa/fuzz.py --examples 3000 --out benchmarks/results/fuzz.json
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _timing
from _timing import header, write

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=3000, help="inputs per fuzz target")
    p.add_argument("--out", default="")
    args = p.parse_args()
    env = dict(os.environ, SEMIREG_FUZZ_EXAMPLES=str(args.examples), SEMIREG_FUZZ_RANDOM="1")
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_fuzz.py",
            "--hypothesis-show-statistics",
            "-k",
            "not odd_arrays",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    out = proc.stdout
    targets = {}
    for block in re.split(r"\n(?=tests/test_fuzz.py::)", out):
        name = re.match(r"tests/test_fuzz.py::(\w+)", block)
        tried = re.findall(r"- (\d+) passing, (\d+) failing, and (\d+) invalid", block)
        if name and tried:
            targets[name.group(1)] = {
                "passing": sum(int(t[0]) for t in tried),
                "failing": sum(int(t[1]) for t in tried),
                "invalid": sum(int(t[2]) for t in tried),
            }
    summary = {
        "examples_per_target": args.examples,
        "targets": targets,
        "pytest_exit": proc.returncode,
        "result_line": out.strip().splitlines()[-1] if out.strip() else "",
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(out[-3000:] if proc.returncode else summary["result_line"])
    for name, t in targets.items():
        print(f"{name:55s} {t['passing']:7d} passing {t['failing']:4d} failing")
    if args.out:
        write(args.out, {**header(), "command": f"python benchmarks/qa/fuzz.py --examples {args.examples}", **summary})
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
