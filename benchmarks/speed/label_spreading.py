"""Label spreading at scale: semireg's (torch, blocks of exact distances) against scikit-learn's
LabelSpreading(kernel="knn") with the same k, alpha and iterations, on the same rows, in one run.

    python benchmarks/speed/label_spreading.py                     # 100,000 rows x 64 features
    python benchmarks/speed/label_spreading.py --rows 20000        # a quicker look

The rows are 10 Gaussian clusters in 64 dimensions with 100 labelled rows; each contender fits once
(a fit at this size takes tens of seconds: no repetition), alternating order with --rounds 2.
Writes benchmarks/results/label-spreading-speed.json: seconds, accuracy on the unlabelled rows,
the ratio (scikit-learn / semireg) and the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.semi_supervised import LabelSpreading

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _timing import header  # noqa: E402

from semireg.classical import CLASSICAL  # noqa: E402
from semireg.classical.labelspreading import LabelSpreadingOptions  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "results" / "label-spreading-speed.json"


def clusters(rows: int, dim: int, k: int, labelled: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=0.4, size=(k, dim))  # overlapping clusters: accuracy says something
    y = np.arange(rows) % k
    x = (centres[y] + rng.normal(size=(rows, dim))).astype(np.float32)
    y_semi = np.full(rows, -1)
    y_semi[:labelled] = y[:labelled]
    return x, y, y_semi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    x, y, y_semi = clusters(args.rows, args.dim, 10, 100)
    opts = LabelSpreadingOptions(k=args.k)
    labelled = y_semi >= 0
    xt, yt = torch.from_numpy(x), torch.from_numpy(y_semi)

    def ours() -> float:
        model = CLASSICAL["labelspreading"].fit(xt[labelled], yt[labelled], xt[~labelled], 10, opts)
        # the fitted distributions of the unlabelled rows are what LabelSpreading's transduction_ holds
        return float((model.distributions[labelled.sum() :].argmax(1).numpy() == y[~labelled]).mean())

    def theirs() -> float:
        ls = LabelSpreading(kernel="knn", n_neighbors=args.k, alpha=opts.alpha, max_iter=opts.iterations, tol=opts.tol)
        ls.fit(x, y_semi)
        return float((ls.transduction_[~labelled] == y[~labelled]).mean())

    seconds: dict[str, list[float]] = {"semireg": [], "scikit-learn": []}
    accuracy: dict[str, float] = {}
    for r in range(args.rounds):
        order = [("semireg", ours), ("scikit-learn", theirs)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            accuracy[name] = fn()
            seconds[name].append(time.perf_counter() - start)
            print(f"{name}: {seconds[name][-1]:.1f} s, accuracy on unlabelled rows {accuracy[name]:.4f}", flush=True)
    best = {name: min(v) for name, v in seconds.items()}
    result = {
        "rows": args.rows,
        "dim": args.dim,
        "k": args.k,
        "seconds": best,
        "accuracy_unlabelled": accuracy,
        "ratio_sklearn_over_semireg": best["scikit-learn"] / best["semireg"],
        "threads": torch.get_num_threads(),
        "machine": header(),
        "command": "python benchmarks/speed/label_spreading.py"
        + (f" --rows {args.rows}" if args.rows != 100_000 else ""),
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
