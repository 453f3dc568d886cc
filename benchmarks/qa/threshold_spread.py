"""The spread behind the thresholds of the tests that train for real outside tests/test_ssl_real.py:
the demo (VAT against labels only), VAT's power-iteration probe on the seed CNNs, the disentangling
autoencoder's short run and the two-process BatchNorm run. Each case runs over seeds on the numeric
path of this process; run it once per CPU kind the project meets, emulated by limiting the
instruction sets the kernels may use:

    python benchmarks/qa/threshold_spread.py --seeds 0 1 2 --out spread.jsonl demo vat-probe disentangle ddp-bn
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 python benchmarks/qa/threshold_spread.py --kind avx512-bf16 ...
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/qa/threshold_spread.py --kind fp32-only ...

`--kind` names the CPU kind being emulated: the demo, the two-process run and the autoencoder go at the precision `auto` gives that kind
(bf16-mixed with AVX-512 BF16, 32-true without). Then

    python benchmarks/qa/threshold_spread.py --summarize spread-*.jsonl

writes benchmarks/results/threshold-spread.json (per case and measurement: every run, lowest,
highest), which the tests read their bounds from.
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

import test_distributed  # noqa: E402
import test_systems_real  # noqa: E402
import test_vat_probe  # noqa: E402

from semireg.config import config_for, load_recipe  # noqa: E402
from semireg.engine import train  # noqa: E402
from semireg.hardware import cpu_flags  # noqa: E402
from semireg.traindata import data_from_config  # noqa: E402

ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
SUMMARY = Path(__file__).resolve().parents[1] / "results" / "threshold-spread.json"
AUTO_PRECISION = {"amx": "bf16-mixed", "avx512-bf16": "bf16-mixed", "fp32-only": "32-true"}


def native_kind() -> str:
    flags = cpu_flags()
    return "amx" if "amx_bf16" in flags else "avx512-bf16" if "avx512_bf16" in flags else "fp32-only"


def demo(seed: int, kind: str) -> dict[str, float]:
    """The demo's two variants at `seed`, at the precision `auto` picks on `kind` (the demo's default)."""
    out = {}
    for variant in ("labels-only", "vat"):
        overrides = {"train.precision": AUTO_PRECISION[kind], "train.progress": False, "train.threads": 1}
        cfg = config_for(load_recipe("demo"), variant, seed, overrides)
        data, split = data_from_config(cfg)
        out[variant] = train(cfg, data=data, split=split).metrics["test"]["accuracy"]
    out["vat_minus_labels_only"] = out["vat"] - out["labels-only"]
    return out


def vat_probe(seed: int, kind: str) -> dict[str, float]:
    digits = test_vat_probe.scaled_digits()
    out = {}
    for name in test_vat_probe.SEED_CNNS:
        measured = test_vat_probe.probe_agreements(name, digits, seed)
        for state, m in measured.items():
            out.update({f"{name}/{state}/{k}": v for k, v in m.items()})
        mean = {k: sum(m[k] for m in measured.values()) / 2 for k in ("fp32", "fp32_large_xi")}
        out[f"{name}/fp32_minus_large_xi"] = mean["fp32"] - mean["fp32_large_xi"]
    return out


def disentangle(seed: int, kind: str) -> dict[str, float]:
    m = test_systems_real.disentangle_metrics(
        Path(tempfile.mkdtemp()) / "run", seed=seed, threads=1, precision=AUTO_PRECISION[kind]
    )
    keys = ("clf_s_accuracy", "s_probe_mlp", "swap_accuracy", "z_probe_mlp", "recon_bce", "recon_bce_other_z")
    out = {k: float(m[k]) for k in keys}
    out["s_minus_z_probe"] = out["s_probe_mlp"] - out["z_probe_mlp"]
    out["recon_other_z_minus_own"] = out["recon_bce_other_z"] - out["recon_bce"]
    return out


def ddp_bn(seed: int, kind: str) -> dict[str, float]:
    one, two = test_distributed.batchnorm_accuracies(seed, AUTO_PRECISION[kind])
    return {"one_process": one, "two_processes": two, "abs_difference": abs(one - two)}


CASES = {"demo": demo, "vat-probe": vat_probe, "disentangle": disentangle, "ddp-bn": ddp_bn}


def summarize(paths: list[Path]) -> None:
    """Per case and measurement: every run (seed, CPU kind, numeric path) with the lowest and highest value."""
    cases: dict[str, dict[str, list[dict]]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            for key, value in row["values"].items():
                run = {"seed": row["seed"], "kind": row["kind"], "path": row["path"], "value": value}
                cases.setdefault(row["case"], {}).setdefault(key, []).append(run)
    out = {
        case: {
            key: {
                "lowest": min(r["value"] for r in runs),
                "highest": max(r["value"] for r in runs),
                "n": len(runs),
                "runs": sorted(runs, key=lambda r: (r["seed"], r["kind"])),
            }
            for key, runs in sorted(keys.items())
        }
        for case, keys in sorted(cases.items())
    }
    SUMMARY.write_text(json.dumps(out, indent=1) + "\n")
    for case, keys in out.items():
        for key, e in keys.items():
            print(f"{case} {key}: {e['lowest']:.4f} .. {e['highest']:.4f} (n={e['n']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help=f"of {sorted(CASES)}")
    parser.add_argument("--summarize", type=Path, nargs="+", help="JSONL files of earlier runs: write the summary")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--kind", choices=sorted(AUTO_PRECISION), help="the CPU kind emulated (default: this one)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    if not args.cases or args.out is None:
        parser.error("give the cases to run and --out")
    if set(args.cases) - set(CASES):
        parser.error(f"unknown cases {sorted(set(args.cases) - set(CASES))}; known: {sorted(CASES)}")
    torch.set_num_threads(1)  # as under pytest-xdist
    kind = args.kind or native_kind()
    path = "+".join(f"{k}={os.environ[k]}" for k in ISA_VARIABLES if k in os.environ) or "native"
    for case in args.cases:
        for seed in args.seeds:
            start = time.perf_counter()
            values = CASES[case](seed, kind)
            row = {"case": case, "seed": seed, "kind": kind, "path": path, "values": values}
            row["seconds"] = round(time.perf_counter() - start, 1)
            print(json.dumps(row), flush=True)
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
