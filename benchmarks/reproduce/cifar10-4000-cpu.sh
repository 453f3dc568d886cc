#!/usr/bin/env bash
# Issue 18: the cifar10-4000-cpu table. Every run with the defaults a user gets (2 threads,
# precision auto), one at a time on an otherwise idle machine (two 2-thread runs on 2 cores slow
# each other far more than 2x, and the wall minutes are part of the figure):
#   every method seed 0 under $ROOT/<recipe>; seeds 1, 2 of labels only, FixMatch and the best
#   method under $ROOT/seeds/<recipe>/seed{1,2}. About 50 min per FixMatch-family run on a 2-core
#   fp32 CPU, 9 min for labels only.
#   python benchmarks/reproduce/figures.py cifar10-4000-cpu   # -> benchmarks/results/figures.json
# Usage: bash benchmarks/reproduce/cifar10-4000-cpu.sh [METHOD ...]   (default: every method, then the extra seeds)
set -euo pipefail
SEMIREG=${SEMIREG:-semireg}
ROOT=${ROOT:-runs/issue18/cifar}
methods=("$@")
if [ ${#methods[@]} -eq 0 ]; then
  methods=(supervised fixmatch flexmatch freematch uda pimodel meanteacher pseudolabel vat)
  extra_seeds=(supervised fixmatch)
else
  extra_seeds=()
fi
for m in "${methods[@]}"; do
  [ -f "$ROOT/cifar10-4000-cpu-$m/results.json" ] && continue   # finished already
  $SEMIREG train "cifar10-4000-cpu-$m" train.progress=false --runs-root "$ROOT"
done
for m in "${extra_seeds[@]}"; do
  [ -f "$ROOT/seeds/cifar10-4000-cpu-$m/seed2/results.json" ] && continue
  $SEMIREG train "cifar10-4000-cpu-$m" --seeds 1,2 train.progress=false --runs-root "$ROOT/seeds"
done
