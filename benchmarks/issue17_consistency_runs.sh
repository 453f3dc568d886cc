#!/usr/bin/env bash
# Issue 17, item 3: cifar10-consistency-cpu --variant finetune-swa, seeds 0-2 (teacher, then the student started
# from it; each stage evaluated on the 15x5 corruptions after training), two stages side by side with
# train.threads=1 each (this 2-core machine), then the figures:
#   python benchmarks/figures.py cifar10-consistency-cpu   # -> benchmarks/results/figures.json
# About 20 min per teacher and 14 min per student of training here (fp32), plus ~7 min of robustness each.
set -euo pipefail
SEMIREG=${SEMIREG:-semireg}
ROOT=${ROOT:-runs/issue17}
VARIANT=${VARIANT:-finetune-swa}
common=(cifar10-consistency-cpu --variant "$VARIANT" train.progress=false train.threads=1 --runs-root "$ROOT")
$SEMIREG train "${common[@]}" --stage teacher --seeds 0 & a=$!
$SEMIREG train "${common[@]}" --stage teacher --seeds 1 & b=$!
wait $a $b
$SEMIREG train "${common[@]}" --stage teacher --seeds 2 & a=$!
$SEMIREG train "${common[@]}" --stage student --seeds 0 & b=$!
wait $a $b
$SEMIREG train "${common[@]}" --stage student --seeds 1 & a=$!
$SEMIREG train "${common[@]}" --stage student --seeds 2 & b=$!
wait $a $b
