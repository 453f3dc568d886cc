"""Pi-model on a small tabular set: test accuracy with its consistency term on and off, beside
labels only and FixMatch (docs/results.md, issue 19, "left as found").

    python benchmarks/pimodel_tabular.py

Breast cancer (scikit-learn), standardised, 20 labelled rows, 380 unlabelled, 169 test rows;
an MLP with one hidden layer of 64, 300 steps, the defaults otherwise.
"""

import numpy as np
from sklearn.datasets import load_breast_cancer

import semireg

b = load_breast_cancer()
x = ((b.data - b.data.mean(0)) / b.data.std(0)).astype(np.float32)
order = np.random.default_rng(0).permutation(len(x))
lab, unl, test = order[:20], order[20:400], order[400:]
for options in (
    {"method": "supervised"},
    {"method": "pimodel"},
    {"method": "pimodel", "weight": 0.0},
    {"method": "pimodel", "noise": 0.0},
    {"method": "fixmatch"},
):
    r = semireg.fit(
        "mlp",
        (x[lab], b.target[lab]),
        x[unl],
        steps=300,
        eval_data=(x[test], b.target[test]),
        progress=False,
        **{"model.hidden": [64]},
        **options,
    )
    print(f"{options}: test accuracy {100 * r.metrics['test']['accuracy']:.2f} %")
