#!/usr/bin/env bash
# Issue 17, item 3: cifar10-consistency-cpu --variant $VARIANT, seeds 0-2 (teacher, then the student; each stage
# evaluated on the 15x5 corruptions after training), two stages side by side with train.threads=1 each (this
# 2-core machine), then the figures:
#   python benchmarks/reproduce/figures.py cifar10-consistency-cpu issue17.cifar10-consistency-cpu   # -> benchmarks/results/figures.json
# TEACHERS=ROOT: no teachers are trained; each seed's student learns from ROOT's finetune-swa teacher of that seed,
# linked into $ROOT (students of one teacher compared on equal terms). EXTRA: overrides for the students only.
#   bash benchmarks/reproduce/cifar10-consistency-cpu.sh                                                  # finetune-swa
#   ROOT=runs/issue17-lr TEACHERS=runs/issue17 EXTRA=train.lr=1.25e-4 bash benchmarks/reproduce/cifar10-consistency-cpu.sh
#   VARIANT=noisy-student TEACHERS=runs/issue17 EXTRA=train.swa=true bash benchmarks/reproduce/cifar10-consistency-cpu.sh
# Per stage, on the AMD EPYC without AMX (fp32): ~20 min per teacher and 14 min per student of training, plus
# ~7 min of robustness each; on a CPU with AMX (bf16-mixed): ~4 + 2 min per teacher, ~2 + 2 min per finetune student.
set -euo pipefail
SEMIREG=${SEMIREG:-semireg}
ROOT=${ROOT:-runs/issue17}
VARIANT=${VARIANT:-finetune-swa}
TEACHERS=${TEACHERS:-}
read -r -a extra <<< "${EXTRA:-}"
common=(cifar10-consistency-cpu --variant "$VARIANT" train.progress=false train.threads=1 --runs-root "$ROOT")
student() { $SEMIREG train "${common[@]}" --stage student --seeds "$1" "${extra[@]}"; }
if [ -n "$TEACHERS" ]; then
  for s in 0 1 2; do
    mkdir -p "$ROOT/cifar10-consistency-cpu/$VARIANT/seed$s"
    ln -sfn "$(realpath "$TEACHERS/cifar10-consistency-cpu/finetune-swa/seed$s/teacher")" \
      "$ROOT/cifar10-consistency-cpu/$VARIANT/seed$s/teacher"
  done
  student 0 & a=$!; student 1 & b=$!; wait $a $b
  student 2
  exit 0
fi
$SEMIREG train "${common[@]}" --stage teacher --seeds 0 & a=$!
$SEMIREG train "${common[@]}" --stage teacher --seeds 1 & b=$!
wait $a $b
$SEMIREG train "${common[@]}" --stage teacher --seeds 2 & a=$!
student 0 & b=$!
wait $a $b
student 1 & a=$!
student 2 & b=$!
wait $a $b
