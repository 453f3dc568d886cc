"""The spread behind the real-data tests' thresholds: each short run of tests/test_ssl_real.py and
tests/test_mnist_real.py over training seeds (the test's split held fixed), one thread as under
pytest-xdist, at the precision the test pins (or another, with --precision).

    python benchmarks/qa/short_run_spread.py --seeds 0 1 2 3 4 --out spread.jsonl labels-200 pimodel vat-150 ...

Run it under another CPU's numeric path by limiting the instruction sets the kernels may use
(an AVX2-only machine: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2);
each line records the path it ran on.

    python benchmarks/qa/short_run_spread.py --summarize spread-*.jsonl

writes benchmarks/results/short-run-spread.json (per case: every run, the lowest and the highest),
which tests/test_ssl_real.py and tests/test_mnist_real.py read their bars from.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[2] / "tests"
sys.path.insert(0, str(TESTS))

import test_ssl_real  # noqa: E402

from semireg.config import config_for, load_recipe  # noqa: E402
from semireg.engine import train  # noqa: E402
from semireg.hardware import cpu_flags  # noqa: E402
from semireg.traindata import data_from_config  # noqa: E402

ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def config_of(case: str, seed: int, precision: str):
    """`labels-STEPS`, `vat-STEPS` / `vatlabels-STEPS` (test_mnist_real's recipe), a method name at
    its test budget or `METHOD@STEPSxMU` at another, with the test's split and `seed` for everything else."""
    pinned = {"data.split_seed": 0, "train.precision": precision}
    if case.startswith(("vat-", "vatlabels-")):
        variant, steps = case.split("-")
        short = {
            "train.steps": int(steps),
            "train.unlabeled_batch_size": 64,
            "train.eval_every": 0,
            "train.progress": False,
            "data.n_test": 2000,
            **pinned,
        }
        return config_for(load_recipe("mnist-100-vat"), "vat" if variant == "vat" else "baseline", seed, short)
    if case.startswith("labels-"):
        method, steps, mu = "supervised", int(case.split("-")[1]), 1
    elif "@" in case:  # METHOD@STEPSxMU: another budget than the test's
        method, budget = case.split("@")
        steps, mu = (int(v) for v in budget.split("x"))
    else:
        budget = test_ssl_real.budget_of(case)
        method, steps, mu = case, budget["steps"], budget["mu"]
    recipe_overrides = {**test_ssl_real.SHORT, "train.steps": steps, "train.mu": mu, **pinned}
    if method != "supervised":
        recipe_overrides["method"] = {"name": method}
        if "warmup" in set(test_ssl_real.METHODS[method].options.__dataclass_fields__):
            recipe_overrides["method.warmup"] = 0.2
    return config_for(load_recipe("mnist-100-ssl"), "", seed, recipe_overrides)


def cpu_kind() -> str:
    flags = cpu_flags()
    return "amx" if "amx_bf16" in flags else "avx512-bf16" if "avx512_bf16" in flags else "fp32-only"


SUMMARY = Path(__file__).resolve().parents[1] / "results" / "short-run-spread.json"


def summarize(paths: list[Path]) -> None:
    """Every measured run per case, with its lowest and highest accuracy (the test's bars come from these)."""
    cases: dict[str, list[dict]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            path_name = "native" if row["path"] == "native" else "+".join(f"{k}={v}" for k, v in row["path"].items())
            runs = cases.setdefault(row["case"], [])
            run = {
                "seed": row["seed"],
                "path": path_name,
                "cpu": row["cpu"],
                "precision": row["precision"],
                "accuracy": row["accuracy"],
            }
            if run not in runs:
                runs.append(run)
    out = {
        case: {
            "lowest": min(r["accuracy"] for r in runs),
            "highest": max(r["accuracy"] for r in runs),
            "n": len(runs),
            "runs": sorted(runs, key=lambda r: (r["seed"], r["path"])),
        }
        for case, runs in sorted(cases.items())
    }
    SUMMARY.write_text(json.dumps(out, indent=1) + "\n")
    for case, entry in out.items():
        print(f"{case}: {entry['lowest']:.4f} .. {entry['highest']:.4f} (n={entry['n']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*")
    parser.add_argument("--summarize", type=Path, nargs="+", help="JSONL files of earlier runs: write the summary")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    if not args.cases or args.out is None:
        parser.error("give the cases to run and --out")
    torch.set_num_threads(1)
    test_ssl_real.SHORT["train.threads"] = 1
    path = {k: os.environ[k] for k in ISA_VARIABLES if k in os.environ} or "native"
    for seed in args.seeds:
        for case in args.cases:
            cfg = config_of(case, seed, args.precision)
            cfg.train.threads = 1
            start = time.perf_counter()
            data, split = data_from_config(cfg)
            acc = train(cfg, Path(tempfile.mkdtemp()) / case, data=data, split=split).metrics["test"]["accuracy"]
            row = {
                "case": case,
                "seed": seed,
                "precision": args.precision,
                "accuracy": acc,
                "cpu": cpu_kind(),
                "path": path,
                "seconds": round(time.perf_counter() - start, 1),
            }
            print(json.dumps(row), flush=True)
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
