"""A run directory records a fingerprint of its data; resume, select's continuation, eval and report
refuse a difference with one line (exit 2 on the command line) instead of going on on other data."""

import csv

import numpy as np
import pytest
import torch

import semireg
from semireg.cli import main
from semireg.errors import RunDirError
from semireg.traindata import TrainData, fingerprint_differences

CLASSES = ("alpha", "beta", "gamma")


def write_blobs_csv(path, seed=0, scale=1.0, shuffle_labels=False, labelled=240):
    rng = np.random.default_rng(seed)
    y = np.arange(240) % 3
    x = 5.0 * np.eye(3, 4)[y] + rng.normal(size=(240, 4))
    if shuffle_labels:
        y = rng.permutation(y)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "d", "label"])
        for i in range(240):
            w.writerow([f"{v * scale:.5f}" for v in x[i]] + [CLASSES[y[i]] if i < labelled else ""])
    return path


def csv_train_args(path, run, steps):
    return [
        "train",
        f"data.dataset=csv:{path}",
        "data.n_labeled=-1",
        "data.n_test=30",
        "data.standardize=false",  # rescaled features then reach the model as they are
        "method.name=supervised",
        f"train.steps={steps}",
        "train.batch_size=16",
        "train.checkpoint_every=10",
        "model.hidden=[16]",
        "train.progress=false",
        "--run-dir",
        str(run),
    ]


def test_fingerprint_changes_with_any_part_of_the_data_and_not_otherwise():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 3, generator=g), torch.arange(20) % 2
    base = TrainData(x_l=x[:8], y_l=y[:8], x_u=x[8:], num_classes=2, eval_sets={"test": (x[:4], y[:4])})
    same = TrainData(
        x_l=x[:8].clone(), y_l=y[:8].clone(), x_u=x[8:].clone(), num_classes=2, eval_sets={"test": (x[:4], y[:4])}
    )
    assert fingerprint_differences(base.fingerprint(), same.fingerprint()) == []
    changed = {
        "labeled": TrainData(x_l=x[:8] * 2, y_l=y[:8], x_u=x[8:], num_classes=2, eval_sets={"test": (x[:4], y[:4])}),
        "unlabeled": TrainData(x_l=x[:8], y_l=y[:8], x_u=x[9:], num_classes=2, eval_sets={"test": (x[:4], y[:4])}),
        "eval_test": TrainData(x_l=x[:8], y_l=y[:8], x_u=x[8:], num_classes=2, eval_sets={"test": (x[:4], 1 - y[:4])}),
    }
    for part, data in changed.items():
        assert fingerprint_differences(base.fingerprint(), data.fingerprint()) == [part]
    order = TrainData(
        x_l=x[:8].flip(0), y_l=y[:8].flip(0), x_u=x[8:], num_classes=2, eval_sets={"test": (x[:4], y[:4])}
    )
    assert fingerprint_differences(base.fingerprint(), order.fingerprint()) == ["labeled"]  # the order is the split


@pytest.mark.parametrize("change", ["rescaled", "labels shuffled"])
def test_resume_after_the_csv_changed_is_refused_in_one_line(tmp_path, capsys, change):
    path = write_blobs_csv(tmp_path / "t.csv")
    run = tmp_path / "run"
    assert main(csv_train_args(path, run, 10)) == 0  # an interrupted run: its checkpoint at step 10
    capsys.readouterr()
    before = (run / "checkpoint.pt").read_bytes()
    write_blobs_csv(path, scale=3.0 if change == "rescaled" else 1.0, shuffle_labels=change == "labels shuffled")
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the data differs from the data this run recorded" in err[0], err
    assert "labeled" in err[0] and "Traceback" not in err[0]
    assert (run / "checkpoint.pt").read_bytes() == before  # untouched
    assert main(["eval", str(run)]) == 2  # nor evaluated on the other data
    write_blobs_csv(path)  # the data it trained on again: it goes on
    assert main(["train", "--resume", str(run)]) == 0


def test_select_with_another_pool_in_the_same_directory_is_refused(tmp_path):
    x, y = np.random.default_rng(0).normal(size=(120, 4)), np.arange(120) % 3
    x[:, :3] += 4.0 * np.eye(3)[y]
    y_semi = np.where(np.arange(120) < 15, y, -1)
    common = dict(methods=["supervised", "labelspreading"], budget="60s", folds=3, steps=20, progress=False)
    first = semireg.select((x, y_semi), out=tmp_path / "sel", **common)
    again = semireg.select((x, y_semi), out=tmp_path / "sel", **common)  # the same data: continued, nothing trained
    assert again.accuracy == first.accuracy
    other_pool = np.random.default_rng(1).normal(size=(80, 4))
    with pytest.raises(RunDirError, match=r"holds a search on other data \(unlabeled rows differ\)"):
        semireg.select((x, y_semi), other_pool, out=tmp_path / "sel", **common)


def test_select_by_default_keeps_one_directory_per_data_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y = np.random.default_rng(0).normal(size=(90, 4)), np.arange(90) % 3
    y_semi = np.where(np.arange(90) < 15, y, -1)
    common = dict(methods=["supervised", "labelspreading"], budget="60s", folds=3, steps=20, progress=False)
    a = semireg.select((x, y_semi), **common)
    b = semireg.select((x, y_semi), np.random.default_rng(1).normal(size=(40, 4)), **common)
    assert a.out != b.out
    assert a.out.parent.resolve() == b.out.parent.resolve() == (tmp_path / "runs" / "select").resolve()
    assert (a.out / "selection.json").exists() and (b.out / "selection.json").exists()


def test_resume_through_the_python_api_on_other_data_is_refused(tmp_path):
    """The run lifecycle itself compares the fingerprint (not only the command line's data rebuild)."""
    from semireg.config import from_kwargs
    from semireg.engine import train

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 4, generator=g), torch.arange(40) % 2
    data = TrainData(x_l=x[:10], y_l=y[:10], x_u=x[10:], num_classes=2)
    cfg = lambda: from_kwargs(  # noqa: E731
        {"method.name": "supervised", "model.hidden": [4], "steps": 4, "batch_size": 4, "progress": False}
    )
    train(cfg(), tmp_path / "run", data=data)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    other = TrainData(x_l=x[:10] * 2, y_l=y[:10], x_u=x[10:], num_classes=2)
    with pytest.raises(RunDirError, match=r"resume .*the data differs .*\(labeled rows changed\)"):
        train(cfg(), tmp_path / "run", data=other, resume=True)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    train(cfg(), tmp_path / "run", data=data, resume=True)  # its own data: goes on
