"""The one-line messages a user gets for bad data of their own (the table in docs/reliability.md,
"Your own data"): a CSV with text, gaps or NaN, arrays with NaN, mismatched lengths, a class
without labels, labels outside the classes, a model output without logits.

    python benchmarks/qa/own_data_errors.py
"""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

import semireg
from semireg.cli import main
from semireg.errors import SemiregError


def cli(args: list[str]) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    lines = [line for line in err.getvalue().splitlines() if line.startswith("semireg: error")]
    return f"exit {code}: {lines[0] if lines else '(no error)'}"


def api(fn) -> str:
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            fn()
    except SemiregError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "(no error)"


def table(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def main_() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = ["train", "data.n_labeled=-1", "data.n_test=0", "--run-dir", str(root / "run")]
        cases = {
            "CSV, a text column": [["1.5", "red", "a"], ["2.0", "blue", "b"]],
            "CSV, an empty value": [["1.5", "", "a"]],
            "CSV, NaN": [["1.5", "nan", "a"]],
            "CSV, a short line": [["1.5", "a"]],
        }
        for name, rows in cases.items():
            path = table(root / "data.csv", ["size", "colour", "label"], rows)
            print(f"| {name} | `{cli(base[:1] + [f'data.dataset=csv:{path}'] + base[1:])}` |")
        x, y = torch.randn(40, 5), torch.arange(40) % 3
        bad = x.clone()
        bad[7, 2] = float("nan")
        linear = nn.Linear(5, 3)

        class NoLogits(nn.Module):
            def forward(self, x):
                return {"scores": x}

        api_cases = {
            "NaN in the labelled inputs": lambda: semireg.fit(linear, (bad, y), steps=1),
            "more labels than inputs": lambda: semireg.fit(linear, (x[:30], y[:31]), steps=1),
            "a class without labels": lambda: semireg.fit(linear, (x[y < 2], y[y < 2]), steps=1),
            "a label outside the classes": lambda: semireg.fit(
                linear, (x, torch.where(y == 2, 5, y)), steps=1, num_classes=3
            ),
            "a label missing (None)": lambda: semireg.fit(
                linear, (x[:3].numpy(), np.array(["a", None, "b"], dtype=object)), steps=1
            ),
            "an output without logits": lambda: semireg.fit(NoLogits(), (x, y), steps=1),
        }
        for name, fn in api_cases.items():
            print(f"| {name} | `{api(fn)}` |")
        assert not (root / "run").exists(), "a refused input must leave no run directory"


if __name__ == "__main__":
    main_()
