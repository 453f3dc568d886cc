#!/usr/bin/env bash
# Issue 17: the source posts' systems run from their recipes, seeds 0-2, two runs side by side
# with train.threads=1 each (this 2-core machine), then their figures:
#   mnist-began --variant public, mnist-disentangle --variant jha, jha-strong-adversary and post.
#   python benchmarks/reproduce/figures.py mnist-began mnist-disentangle   # -> benchmarks/results/figures.json
set -euo pipefail
SEMIREG=${SEMIREG:-semireg}
ROOT=${ROOT:-runs/issue17}
common=(train.progress=false train.threads=1 --runs-root "$ROOT")
$SEMIREG train mnist-began --variant public --seeds 0 "${common[@]}" & a=$!
$SEMIREG train mnist-began --variant public --seeds 1 "${common[@]}" & b=$!
wait $a $b
$SEMIREG train mnist-began --variant public --seeds 2 "${common[@]}" & a=$!
$SEMIREG train mnist-disentangle --variant jha --seeds 0 "${common[@]}" & b=$!
wait $a $b
$SEMIREG train mnist-disentangle --variant jha --seeds 1 "${common[@]}" & a=$!
$SEMIREG train mnist-disentangle --variant jha --seeds 2 "${common[@]}" & b=$!
wait $a $b
# The headline disentangle variant since 2026-12-05 (30 adversary steps a round since that day's later session; the
# figures' seed 0 is a resumed trial, see benchmarks/reproduce/figures.py): three seeds side by side, one thread each (~30 min here).
for seed in 0 1 2; do $SEMIREG train mnist-disentangle --variant jha-strong-adversary --seeds $seed "${common[@]}" & done
wait
