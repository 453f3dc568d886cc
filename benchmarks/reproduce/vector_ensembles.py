"""Why method="auto" keeps the mean of FlexMatch, label spreading and self-training unless a candidate beats it:
each member alone and their means, scored on validation rows of the development tasks (digits, wine,
breast cancer; iris is held out), the same splits as vectors.py.

    python benchmarks/reproduce/vector_ensembles.py          # 3 splits -> benchmarks/results/vector-ensembles.json
    python benchmarks/reproduce/vector_ensembles.py --tasks digits wine cancer --members uda flexmatch labelspreading selftraining

The members are fitted at their current defaults (the JSON holds the last run of each subset).

The validation score is the accuracy on the unlabelled training rows' true labels (the test rows are not
read), as in vector_defaults.py.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # vectors.py: the same splits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from vectors import TASKS, split

from semireg import SemiSupervisedClassifier
from semireg.estimator import AUTO_ENSEMBLE

OUT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "vector-ensembles.json"


def combinations(members: list[str]) -> dict[str, list[str]]:
    """Every non-empty subset of the members, named by joining them with '+'."""
    subsets = (c for r in range(1, len(members) + 1) for c in itertools.combinations(members, r))
    return {"+".join(c): list(c) for c in subsets}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["digits", "wine"])
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--members", nargs="+", default=list(AUTO_ENSEMBLE))
    args = ap.parse_args()
    results: dict = json.loads(OUT.read_text()) if OUT.exists() else {}
    combos = combinations(args.members)
    for task in args.tasks:
        loader, n_labels = TASKS[task]
        x, y = loader(return_X_y=True)
        scores: dict[str, list[float]] = {name: [] for name in combos}
        for seed in range(args.splits):
            x_tr, y_semi, _, _ = split(x, y, n_labels, seed)
            y_true = split(x, y, len(y), seed)[1]  # the same rows, every label (the split is seeded)
            unlabelled = y_semi == -1
            probs, classes = {}, None
            for member in args.members:
                model = make_pipeline(StandardScaler(), SemiSupervisedClassifier(member, random_state=seed))
                model.fit(x_tr, y_semi)
                probs[member], classes = model.predict_proba(x_tr[unlabelled]), model.classes_
            for name, members in combos.items():
                mean = sum(probs[m] for m in members) / len(members)
                scores[name].append(100.0 * float((classes[mean.argmax(1)] == y_true[unlabelled]).mean()))
        results.setdefault(task, {}).update({name: {"validation_accuracy": v} for name, v in scores.items()})
        for name, v in scores.items():
            print(f"{task} {name}: {statistics.fmean(v):.2f} (worst {min(v):.1f})", flush=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
