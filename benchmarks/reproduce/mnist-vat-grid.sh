#!/usr/bin/env bash
# Seed 000's grid: dropout x VAT as a supervised regulariser on all 60,000 MNIST labels (the Keras MNIST CNN,
# Adadelta, 12 epochs), every variant over seeds 0, 1, 2 with the defaults a user gets (2 threads, precision
# auto), one run at a time on an otherwise idle machine; then its figures and the results page.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-runs/grid}
semireg train mnist-vat-grid --seeds 0,1,2 train.progress=false --runs-root "$ROOT"
python benchmarks/reproduce/figures.py mnist-vat-grid
python benchmarks/reproduce/results_page.py
