#!/usr/bin/env bash
# Issue 16: equal steps, equal accuracy (fp32 against the defaults), and VAT's power iteration in
# bf16 against fp32 under the defaults. One run at a time, default threads (2), on an idle machine:
# the time-to-accuracy figures are read from the same runs (benchmarks/reproduce/figures.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
S="${SEMIREG:-.venv/bin/semireg}"
FP32="precision=32-true channels_last=false"
common=(--seeds 0,1,2 train.steps=1000 train.progress=false)
$S train mnist-100-vat --variant vat "${common[@]}" --runs-root runs/issue16/auto
$S train mnist-100-vat --variant vat "${common[@]}" $FP32 --runs-root runs/issue16/fp32
$S train mnist-100-vat --variant vat "${common[@]}" method.probe=autocast method.xi=0.3 --runs-root runs/issue16/auto-bf16-probe-xi0.3
$S train mnist-100-vat --variant vat "${common[@]}" method.probe=fp32 method.xi=0.1 --runs-root runs/issue16/auto-fp32-probe-xi0.1
$S train mnist-100-fixmatch "${common[@]}" --runs-root runs/issue16/auto
$S train mnist-100-fixmatch "${common[@]}" $FP32 --runs-root runs/issue16/fp32
.venv/bin/python benchmarks/reproduce/figures.py issue16
