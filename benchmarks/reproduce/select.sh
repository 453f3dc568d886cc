#!/usr/bin/env bash
# Issue 19: `semireg select` on three data sets, as a user would run it (defaults: threads,
# precision auto), each search within its --budget, then --fit (the recommended method and
# labels-only on all labels, scored on the held-out test set the search never read).
#   digits as images: the demo recipe (50 labels, 500 test images held out), seeds 0, 1, 2
#   breast cancer as a CSV: 20 labels (balanced), 169 rows held out as the test set, the other
#     380 rows unlabelled; seeds 0, 1, 2
#   MNIST with 100 labels (mnist-100-ssl: cnn_seed001, the official test set), seeds 0, 1, 2
# Run on an idle machine, one search at a time (the budget is wall time).
set -euo pipefail
SEMIREG=${SEMIREG:-semireg}
PY=${PY:-python}
ROOT=${ROOT:-runs/issue19}
mkdir -p "$ROOT/data"
$PY - "$ROOT/data/cancer.csv" <<'PYEOF'
import csv, sys
from sklearn.datasets import load_breast_cancer
b = load_breast_cancer()
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow([n.replace(" ", "_") for n in b.feature_names] + ["label"])
    for row, t in zip(b.data, b.target):
        w.writerow([f"{v:g}" for v in row] + [b.target_names[t]])
PYEOF
for seed in ${SEEDS:-0 1 2}; do
  $SEMIREG select demo --budget 4m --fit --seed "$seed" --out "$ROOT/digits/seed$seed" > "$ROOT/digits-seed$seed.txt"
  $SEMIREG select "data.dataset=csv:$ROOT/data/cancer.csv" data.protocol=holdout data.n_test=169 data.n_labeled=20 \
    data.balanced=true --budget 2m --fit --seed "$seed" --out "$ROOT/cancer/seed$seed" > "$ROOT/cancer-seed$seed.txt"
done
for seed in ${MNIST_SEEDS:-0 1 2}; do
  $SEMIREG select mnist-100-ssl --budget 20m --fit --seed "$seed" --out "$ROOT/mnist-100/seed$seed" > "$ROOT/mnist-100-seed$seed.txt"
done
