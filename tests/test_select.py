"""`semireg select`: folds that are honest about few labels, a budget that holds, a verdict that says
when differences are noise, ordinary (resumable) run directories, and the CLI on a CSV."""

import csv
import json
import time

import numpy as np
import pytest
import torch

import semireg
from semireg.cli import main
from semireg.errors import ConfigError
from semireg.selection import Cost, Selection, fold_indices, parse_budget, steps_that_fit, verdict


def blobs(n=300, d=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 3
    y = torch.arange(n) % k
    return centers[y] + torch.randn(n, d, generator=g), y


def test_folds_partition_the_labels_stratified_when_they_can():
    y = torch.tensor([0] * 6 + [1] * 6 + [2] * 3)
    folds = fold_indices(y, 3, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(15))  # disjoint, every label once
    assert all(sorted(y[torch.from_numpy(f)].tolist()) == [0, 0, 1, 1, 2] for f in folds)  # stratified
    few = torch.tensor([0, 0, 0, 1])  # class 1 has fewer labels than folds: plain folds
    assert sorted(np.concatenate(fold_indices(few, 2, seed=0)).tolist()) == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="at least 2"):
        fold_indices(y, 1, seed=0)


def test_budget_parsing_and_the_steps_that_fit():
    assert [parse_budget(t) for t in ("90", "90s", "2m", "1.5h", 30)] == [90, 90, 120, 5400, 30]
    with pytest.raises(ConfigError, match="not a duration"):
        parse_budget("ten minutes")
    costs = {"a": Cost(step_s=0.01, run_s=1.0), "b": Cost(step_s=0.03, run_s=1.0)}
    # 3 folds: 6 s fixed, 0.12 s per step -> (0.9 * 30 - 6) / 0.12 = 175 steps (a tenth kept in reserve)
    assert steps_that_fit(costs, 30.0, 3, max_steps=1000) == 175
    assert steps_that_fit(costs, 30.0, 3, max_steps=50) == 50
    with pytest.raises(ConfigError, match="raise the budget"):
        steps_that_fit(costs, 9.0, 3, max_steps=1000)


def selection(acc):
    return Selection(
        out=None,
        steps=10,
        folds=[np.arange(10)] * len(next(iter(acc.values()))),
        accuracy=acc,
        run_time_s={m: [1.0] * len(v) for m, v in acc.items()},
    )


def test_the_verdict_says_when_a_difference_is_noise():
    clear = selection({"supervised": [0.70, 0.72, 0.71], "vat": [0.80, 0.83, 0.81], "pimodel": [0.60, 0.61, 0.62]})
    best, text = verdict(clear)
    assert (
        best == "vat" and "beats labels only by +10.33" in text and "clearly ahead of the runner-up supervised" in text
    )
    assert verdict(selection({"vat": [0.8, 0.9], "fixmatch": [0.7, 0.7]}))[0] == "vat"  # no labels-only candidate
    noisy = selection({"supervised": [0.70, 0.80, 0.75], "vat": [0.78, 0.72, 0.80]})
    best, text = verdict(noisy)
    # vat has the best mean but loses fold 2: labels only is recommended, and the text says why
    assert best == "supervised" and "no method beats labels only beyond noise" in text and "+1.67" in text
    tie = selection({"supervised": [0.9, 0.9], "fixmatch": [0.9, 0.9]})
    assert verdict(tie)[0] == "supervised"  # a tie goes to the simpler method


def test_select_runs_every_candidate_on_every_fold_resumes_and_fits(tmp_path):
    x, y = blobs()
    names = np.array(["a", "b", "c"])[y.numpy()]
    kwargs = dict(
        methods=["supervised", "vat", "fixmatch"],
        folds=2,
        budget="120s",
        out=tmp_path / "sel",
        progress=False,
        eval_data=(x[200:], names[200:]),
        **{"model.hidden": [32], "train.steps": 40, "train.batch_size": 12},
    )
    start = time.perf_counter()
    sel = semireg.select((x[:24], names[:24]), x[24:200], fit=True, **kwargs)
    assert time.perf_counter() - start < 120
    assert set(sel.accuracy) == {"supervised", "vat", "fixmatch"} and all(len(v) == 2 for v in sel.accuracy.values())
    assert sel.steps == 40 and sel.recommended in sel.accuracy and "validation samples" in sel.table
    assert set(sel.fitted) == {sel.recommended, "supervised"} and sel.fitted["supervised"]["test"]["accuracy"] > 0.8
    assert sel.fitted["supervised"]["class_names"] == ["a", "b", "c"]
    for fold in (0, 1):
        for m in sel.accuracy:  # ordinary run directories, validated on their own fold only
            results = json.loads((tmp_path / "sel" / f"fold{fold}" / m / "results.json").read_text())
            assert "test" not in results and results["val"]["accuracy"] == sel.accuracy[m][fold]
    assert (tmp_path / "sel" / "compare.html").exists()
    saved = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert saved["recommended"] == sel.recommended and saved["plan"]["steps"] == 40
    # Run again: the plan and every finished run are reused, nothing retrained.
    stamp = (tmp_path / "sel" / "fold1" / "vat" / "results.json").stat().st_mtime_ns
    again = semireg.select((x[:24], names[:24]), x[24:200], **kwargs)
    assert again.accuracy == sel.accuracy
    assert (tmp_path / "sel" / "fold1" / "vat" / "results.json").stat().st_mtime_ns == stamp


def test_select_from_the_command_line_on_a_csv(tmp_path, capsys):
    x, y = blobs(240)
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{j}" for j in range(6)] + ["label"])
        for i in range(240):
            w.writerow([f"{v:.4f}" for v in x[i].tolist()] + [str(int(y[i])) if i < 18 else ""])
    assert (
        main(
            [
                "select",
                f"data.dataset=csv:{path}",
                "data.n_labeled=-1",
                "data.n_test=0",
                "model.hidden=[32]",
                "train.steps=30",
                "--methods",
                "supervised,pseudolabel",
                "--folds",
                "3",
                "--budget",
                "60s",
                "--out",
                str(tmp_path / "sel"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| supervised |" in out and "| pseudolabel |" in out and "recommended:" in out
    assert (
        main(
            [
                "select",
                f"data.dataset=csv:{path}",
                "data.n_labeled=-1",
                "data.n_test=0",
                "--methods",
                "consistency",
                "--out",
                str(tmp_path / "no"),
            ]
        )
        == 2
    )
    assert "distil(s) from a teacher" in capsys.readouterr().err
