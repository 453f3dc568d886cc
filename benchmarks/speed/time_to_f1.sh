#!/usr/bin/env bash
# Issue 16: time to macro-F1 0.97 / 0.98 on mnist-100-vat --variant vat with the recipe's defaults
# (precision auto, 2 threads), one run at a time on an idle machine (benchmarks/reproduce/figures.py reads them).
set -euo pipefail
cd "$(dirname "$0")/../.."
S="${SEMIREG:-.venv/bin/semireg}"
$S train mnist-100-vat --variant vat --seeds 0,1,2 train.progress=false --runs-root runs/issue16/defaults
