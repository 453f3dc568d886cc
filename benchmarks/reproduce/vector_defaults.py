"""How the estimator's defaults for vectors were chosen: candidates scored on validation rows, never
on a test set, on development tasks only (iris is held out: benchmarks/reproduce/vectors.py is the first
time the defaults meet it; breast cancer was, until its validation rows were read to find why the strong
view failed there, and is a development task since).

    python benchmarks/reproduce/vector_defaults.py          # digits and wine, 3 splits -> vector-defaults.json
    python benchmarks/reproduce/vector_defaults.py --methods labelspreading selftraining --shapes vat-paper
    python benchmarks/reproduce/vector_defaults.py --methods vat --eps-shares 0.05 0.1 0.15 0.3
    python benchmarks/reproduce/vector_defaults.py --methods pimodel --set method.weight=1 method.balance=1

Each split is vectors.py's split of the same seed; its labelled rows train, and the validation score is
the accuracy on the unlabelled training rows' true labels (the test rows are not read). A candidate is a
method, an MLP shape and a step count (a classical method has neither: its entries carry the
shape's name only for the table's sake); for VAT also the radius as a share of the rows' RMS
distance from their mean (`--eps-shares`; the scaler makes that distance sqrt(D)).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))  # vectors.py: the same splits
from vectors import TASKS, split

from semireg import SemiSupervisedClassifier, list_classical
from semireg.data.idx import parse_idx, read_bytes

OUT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "vector-defaults.json"


def load_digits_parity(return_X_y: bool = True):
    """Digits as a two-class task (odd or even): a development task with two classes, as breast cancer has."""
    x, y = load_digits(return_X_y=True)
    return x, y % 2


def load_digits_skewed(return_X_y: bool = True):
    """Digits as an unbalanced two-class task (0-2 against 3-9: 30 % of the rows in the smaller class): a
    development task whose classes are about as unequal as breast cancer's (37 %)."""
    x, y = load_digits(return_X_y=True)
    return x, (y >= 3).astype(np.int64)


def load_redundant(return_X_y: bool = True):
    """A synthetic two-class table of 570 rows: 30 features, all linear mixtures of 3 informative ones plus
    noise (as breast cancer's 30 size and shape measurements are nearly functions of a few), classes 37 / 63 %."""
    x, y = make_classification(
        n_samples=570,
        n_features=30,
        n_informative=3,
        n_redundant=27,
        n_clusters_per_class=2,
        weights=[0.37],
        class_sep=1.0,
        flip_y=0.01,
        random_state=0,
    )
    x = x + np.random.default_rng(0).normal(scale=0.3, size=x.shape)  # redundant, not exactly collinear
    return x, y


def load_lognormal(return_X_y: bool = True):
    """`load_redundant`'s rows as positive, right-skewed measurements (exp of each feature): tables of sizes,
    counts and amounts have long right tails, which the standard scaler leaves in place."""
    x, y = load_redundant()
    return np.exp(0.7 * x), y


def load_mnist_pixels(return_X_y: bool = True):
    """The first 3,000 MNIST training images as 784 raw pixel features: a development task of many strongly
    correlated features (neighbouring pixels), as breast cancer's size measurements are. Reads SEMIREG_DATA."""
    root = Path(os.environ.get("SEMIREG_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) / "mnist"
    x = parse_idx(read_bytes(root / "train-images-idx3-ubyte.gz"))[:3000].reshape(3000, -1).astype(np.float32)
    y = parse_idx(read_bytes(root / "train-labels-idx1-ubyte.gz"))[:3000].astype(np.int64)
    return x / 255.0, y


DEV_TASKS = {
    **TASKS,
    "digits-parity": (load_digits_parity, 30),
    "digits-skewed": (load_digits_skewed, 30),
    "redundant": (load_redundant, 30),
    "lognormal": (load_lognormal, 30),
    "mnist-pixels": (load_mnist_pixels, 50),
}
SHAPES = {"vat-paper": [], "256x2": [256, 256], "128x2": [128, 128]}
# Every neural candidate's key names its norm layer; without a --set of it, the vector default's.
# (Entries before LayerNorm became the vector default were measured with BatchNorm: model.norm="batch".)
NORM = 'model.norm="layer"'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["digits", "wine"])
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=["supervised", "fixmatch", "uda", "vat"])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES))
    ap.add_argument("--steps", type=int, nargs="+", default=[500])
    ap.add_argument(
        "--eps-shares", type=float, nargs="+", default=[None], help="VAT's eps as a share of the RMS radius"
    )
    ap.add_argument("--set", nargs="*", default=[], help="key=value options of every candidate (part of its key)")
    args = ap.parse_args()
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    grid = itertools.product(args.tasks, args.methods, args.shapes, args.steps, args.eps_shares)
    for task, method, shape, steps, share in grid:
        loader, n_labels = DEV_TASKS[task]
        x, y = loader(return_X_y=True)
        extra = {"method.eps": share * x.shape[1] ** 0.5} if share is not None and method == "vat" else {}
        extra.update({k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)})
        scores, seconds = [], []
        for seed in range(args.splits):
            x_tr, y_semi, _, _ = split(x, y, n_labels, seed)
            y_true = split(x, y, len(y), seed)[1]  # the same rows, every label (the split is seeded)
            options = {**({"model.hidden": SHAPES[shape]} if SHAPES[shape] else {}), **extra}
            clf = SemiSupervisedClassifier(method=method, steps=steps, options=options, random_state=seed)
            start = time.perf_counter()
            model = make_pipeline(StandardScaler(), clf).fit(x_tr, y_semi)
            seconds.append(time.perf_counter() - start)
            unlabelled = y_semi == -1
            scores.append(100.0 * float((model.predict(x_tr[unlabelled]) == y_true[unlabelled]).mean()))
        key = f"{task}/{method}/{shape}/{steps}" + (f"/eps{share:g}" if share is not None and method == "vat" else "")
        named = any(item.startswith("model.norm=") for item in args.set) or method in list_classical()
        sets = args.set if named else [*args.set, NORM]
        key += "".join(f"/{item}" for item in sets)
        results[key] = {"validation_accuracy": scores, "seconds": [round(s, 2) for s in seconds]}
        print(
            f"{key}: {statistics.fmean(scores):.1f} (worst {min(scores):.1f}) in {statistics.fmean(seconds):.1f} s",
            flush=True,
        )
        OUT.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
