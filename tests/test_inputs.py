"""A user's own data as people keep it: every method on images and on vectors, CSV files, class
folders with a pile of unlabelled images, (N, H, W, C) arrays, labels by name, models that return
more than logits, and bad input refused early with one line (and nothing written)."""

import csv
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import semireg
from semireg.augment import AugmentConfig, Augmenter, swap_noise
from semireg.cli import main
from semireg.data.arrays import as_images, encode_labels
from semireg.data.folders import load_folder
from semireg.data.registry import load_dataset
from semireg.data.tabular import load_csv
from semireg.errors import ConfigError, DataError
from semireg.methods import METHODS

K = 3


def blobs(n=240, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(K, d, generator=g) * 3
    y = torch.arange(n) % K
    return centers[y] + torch.randn(n, d, generator=g), y


def images(n=240, seed=0):
    """(N, 1, 8, 8) images whose class is a bright row: a CNN-sized problem that trains in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    x = 0.3 * torch.rand(n, 1, 8, 8, generator=g)
    x[torch.arange(n), 0, 2 * y + 1] += 0.7
    return x, y


INPUTS = {"vectors": blobs, "images": images}


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A finished supervised run per input kind, for the methods that distil from a teacher."""
    root = tmp_path_factory.mktemp("teachers")
    out = {}
    for kind, make in INPUTS.items():
        x, y = make()
        semireg.fit("mlp", (x[:30], y[:30]), steps=5, run_dir=root / kind, **{"model.hidden": [16]})
        out[kind] = str(root / kind)
    return out


@pytest.mark.parametrize("kind", sorted(INPUTS))
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_on_every_kind_of_input(name, kind, teachers):
    x, y = INPUTS[kind]()
    spec = METHODS[name]
    extra = {"teacher": teachers[kind]} if spec.needs_teacher else {}
    if spec.needs_ema:
        extra["ema_decay"] = 0.9
    if "threshold" in spec.options.__dataclass_fields__:
        extra["threshold"] = 0.0  # an untrained model is never confident: let the unlabelled term act
    res = semireg.fit(
        "mlp",
        (x[:30], y[:30]),
        x[30:200],
        method=name,
        steps=4,
        batch_size=10,
        unlabeled_batch_size=20,
        eval_data=(x[200:], y[200:]),
        **{"model.hidden": [16]},
        **extra,
    )
    assert res.metrics["steps"] == 4 and 0.0 <= res.metrics["test"]["accuracy"] <= 1.0


def test_swap_donors_come_from_rows_of_the_same_group():
    x = torch.arange(12 * 5, dtype=torch.float32).view(12, 5)  # every value unique: its row is readable
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3])  # row 11 is alone in its group
    swapped = swap_noise(x, 1.0, torch.Generator().manual_seed(0), groups)
    donor_row = (swapped // 5).long()  # (12, 5): value v sits in row v // 5
    assert torch.equal(groups[donor_row], groups.view(-1, 1).expand(-1, 5))  # never another group's values
    assert torch.equal(swapped[11], x[11])
    assert (donor_row != torch.arange(12).view(-1, 1)).any()  # something moved
    for j in range(5):  # a pairing: each row of a group gives each feature exactly once
        assert torch.equal(donor_row[:, j].sort().values, torch.arange(12))
    anywhere = swap_noise(x, 1.0, torch.Generator().manual_seed(0))
    assert (groups[(anywhere // 5).long()] != groups.view(-1, 1)).any()  # without groups: any row
    aug = Augmenter(AugmentConfig(swap=1.0, strong_noise=0.0, swap_donors="any"), seed=0)
    assert (groups[(aug.strong(x, groups) // 5).long()] != groups.view(-1, 1)).any()  # "any" ignores them
    with pytest.raises(ConfigError, match="swap_donors"):
        Augmenter(AugmentConfig(swap_donors="same"))


def test_vector_views_stay_in_each_features_own_values():
    x, _ = blobs(64)
    g = torch.Generator().manual_seed(0)
    swapped = swap_noise(x, 0.3, g)
    changed = (swapped != x).float().mean().item()
    assert 0.15 < changed < 0.4  # about 30 % replaced (a donor may be the row itself)
    for j in range(x.shape[1]):  # every value comes from the same column of some row
        assert torch.isin(swapped[:, j], x[:, j]).all()
    aug = Augmenter(AugmentConfig(noise=0.1, swap=0.0, strong_noise=0.0), seed=1, feature_std=torch.full((6,), 2.0))
    many = torch.zeros(20000, 6)
    assert aug.weak(many).std(0).sub(0.2).abs().max() < 0.01  # noise in units of each feature's spread
    assert torch.equal(aug.strong(many), many)  # no swap, no noise: the strong view is the weak one
    imgs = torch.rand(4, 1, 8, 8)
    assert aug.weak(imgs).shape == imgs.shape  # images keep their own views (no noise added)
    with pytest.raises(ConfigError, match="augment.swap"):
        Augmenter(AugmentConfig(swap=1.5))


def test_labels_by_name_are_kept_and_spoken(tmp_path):
    x, y = blobs()
    names = np.array(["cat", "dog", "emu"])[y.numpy()]
    res = semireg.fit(
        "mlp",
        (x[:60], names[:60]),
        steps=30,
        eval_data=(x[200:], names[200:]),
        run_dir=tmp_path / "run",
        **{"model.hidden": [16]},
    )
    assert res.metrics["class_names"] == ["cat", "dog", "emu"] and res.metrics["test"]["accuracy"] > 0.6
    assert '"cat"' in (tmp_path / "run" / "meta.json").read_text()
    with pytest.raises(DataError, match="row 1 has label 'bird'"):
        encode_labels(["cat", "bird"], "eval y", classes=["cat", "dog"])
    labels, classes = encode_labels([True, False, True])
    assert classes == ["False", "True"] and labels.tolist() == [1, 0, 1]


def test_channels_last_arrays_are_recognised(capsys):
    x = np.random.default_rng(0).integers(0, 256, size=(5, 8, 6, 3), dtype=np.uint8)
    t = as_images(x, "labeled x")
    assert t.shape == (5, 3, 8, 6) and torch.equal(t[2, 1], torch.from_numpy(x[2, :, :, 1]).float() / 255)
    assert "read as (N, H, W, C)" in capsys.readouterr().err
    assert as_images(np.zeros((5, 3, 8, 8)), "x").shape == (5, 3, 8, 8)  # already (N, C, H, W): untouched


class DictModel(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind, self.body = kind, nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, K))

    def forward(self, x):
        logits = self.body(x)
        if self.kind == "dict":
            return {"logits": logits, "hidden": x}
        if self.kind == "tuple":
            return logits, x
        return types.SimpleNamespace(logits=logits, loss=None)


@pytest.mark.parametrize("kind", ["dict", "tuple", "object"])
def test_models_returning_more_than_logits_train(kind):
    x, y = blobs()
    model = DictModel(kind)
    res = semireg.fit(
        model, (x[:60], y[:60]), x[60:200], method="vat", steps=40, lr=1e-2, eps=1.0, eval_data=(x[200:], y[200:])
    )
    assert res.model is model and res.metrics["test"]["accuracy"] > 0.6


def test_a_model_output_without_logits_is_one_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, K)

        def forward(self, x):
            return {"scores": self.lin(x)}

    x, y = blobs()
    with pytest.raises(ConfigError, match="no 'logits' tensor"):
        semireg.fit(Bad(), (x[:30], y[:30]), steps=1)


def test_a_class_without_labels_says_what_was_inferred_and_why(capsys):
    x, y = blobs()
    keep = y < 2  # the labelled set misses class 2; the model has three outputs
    with pytest.raises(DataError, match=r"class 2 of 3 \(the model's output width\) has no labelled sample"):
        semireg.fit(nn.Linear(6, 3), (x[keep][:30], y[keep][:30]), steps=1)
    assert "3 classes (the model's output width)" in capsys.readouterr().err
    with pytest.raises(DataError, match="class 1 of 3"):  # integer labels 0 and 2: class 1 is empty
        semireg.fit("mlp", (x[:30], torch.where(y[:30] == 1, 2, y[:30])), steps=1)


@pytest.mark.parametrize(
    "bad,needle",
    [
        ("nan", "nan in row 4, column 2"),
        ("inf", "inf in row 4, column 2"),
        ("rows", "31 labels for 30 inputs"),
        ("range", r"labels must lie in \[0, 3\)"),
        ("negative", "row 3 is -2"),  # -1 marks an unlabelled row
        ("unlabeled", "unlabeled: nan in row 7"),
    ],
)
def test_bad_arrays_are_refused_before_any_run_directory(tmp_path, bad, needle):
    x, y = blobs()
    x_l, y_l, x_u = x[:30].clone(), y[:30].clone(), x[30:].clone()
    if bad in ("nan", "inf"):
        x_l[4, 2] = float(bad)
    elif bad == "rows":
        y_l = y[:31]
    elif bad == "range":
        y_l[5] = 7
    elif bad == "negative":
        y_l[3] = -2
    else:
        x_u[7, 0] = float("nan")
    with pytest.raises(DataError, match=needle):
        semireg.fit(
            "mlp",
            (x_l, y_l),
            x_u,
            method="vat",
            steps=1,
            num_classes=3 if bad == "range" else None,
            run_dir=tmp_path / "run",
        )
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- CSV


def write_csv(path: Path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def blob_csv(path: Path, n_labelled=30, n=240, label="label"):
    x, y = blobs(n)
    names = ["alpha", "beta", "gamma"]
    rows = [[f"{v:.5f}" for v in x[i].tolist()] + [names[int(y[i])] if i < n_labelled else ""] for i in range(n)]
    return write_csv(path, [f"f{j}" for j in range(x.shape[1])] + [label], rows)


def test_csv_rows_labelled_and_not(tmp_path):
    ds = load_csv(blob_csv(tmp_path / "t.csv"))
    assert ds.class_names == ["alpha", "beta", "gamma"] and len(ds.y_train) == 30 and len(ds.x_unlabeled) == 210
    everything = torch.cat([ds.x_train, ds.x_unlabeled])
    assert everything.mean(0).abs().max() < 1e-4 and (everything.std(0, unbiased=False) - 1).abs().max() < 1e-3
    assert ds.feature_stats["columns"] == [f"f{j}" for j in range(6)]
    raw = load_csv(tmp_path / "t.csv", standardize=False)
    assert raw.feature_stats is None and raw.x_train.abs().max() > 2


@pytest.mark.parametrize(
    "rows,kwargs,needle",
    [
        ([["1", "red", "a"]], {}, "column 'colour' is not numeric (line 2: 'red')"),
        ([["1", "", "a"]], {}, "line 2, column 'colour': empty value"),
        ([["1", "nan", "a"]], {}, "line 2, column 'colour': nan"),
        ([["1", "2"]], {}, "line 2 has 2 fields"),
        ([["1", "2", ""]], {}, "no row has a label"),
        ([["1", "2", "a"]], {"label_column": "kind"}, "no column named 'kind'"),
        ([["1", "2", "a"]], {"drop_columns": ("nope",)}, "no such column: nope"),
    ],
)
def test_bad_csv_is_one_clear_error(tmp_path, rows, kwargs, needle):
    path = write_csv(tmp_path / "bad.csv", ["size", "colour", "label"], rows)
    with pytest.raises(DataError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_csv(path, **kwargs)


def test_csv_from_the_command_line_trains_predicts_and_refuses_bad_files(tmp_path, capsys):
    path = blob_csv(tmp_path / "t.csv")
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                f"data.dataset=csv:{path}",
                "data.n_labeled=-1",
                "data.n_test=0",
                "method.name=fixmatch",
                "train.steps=60",
                "train.batch_size=10",
                "model.hidden=[32]",
                "train.progress=false",
                "--run-dir",
                str(run),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["predict", str(run), str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 240 and all(line.split("\t")[1] in ("alpha", "beta", "gamma") for line in out)
    x, y = blobs(240)
    predicted = [["alpha", "beta", "gamma"].index(line.split("\t")[1]) for line in out]
    assert (torch.tensor(predicted) == y).float().mean() > 0.8
    bad = write_csv(tmp_path / "bad.csv", ["a", "b", "label"], [["1", "2", "x"], ["3", "inf", "y"]])
    assert (
        main(
            [
                "train",
                f"data.dataset=csv:{bad}",
                "data.n_labeled=-1",
                "data.n_test=0",
                "--run-dir",
                str(tmp_path / "no"),
            ]
        )
        == 2
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("semireg")]
    assert err == [f"semireg: error: {bad}: line 3, column 'b': inf (NaN or inf); fill or drop it"]
    assert not (tmp_path / "no").exists()


# ----------------------------------------------------------------------------- folders


def write_images(folder: Path, n: int, value: int, size=(8, 8)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full(size, (value + i) % 256, dtype=np.uint8)).save(folder / f"{i}.png")


def test_class_folders_with_a_pile_of_unlabelled_images(tmp_path):
    root = tmp_path / "pets"
    write_images(root / "cat", 3, 10)
    write_images(root / "dog", 4, 200)
    write_images(root / "unlabeled" / "batch1", 5, 100)
    ds = load_folder(root, cache=tmp_path / "cache")
    assert ds.class_names == ["cat", "dog"] and len(ds.y_train) == 7 and len(ds.x_unlabeled) == 5
    pile = tmp_path / "pile"
    write_images(pile / "a", 2, 50)
    write_images(pile, 3, 60)  # images at the top level count too
    both = load_dataset(f"folder:{root}", unlabeled=str(pile))
    assert len(both.x_unlabeled) == 10
    write_images(tmp_path / "big", 2, 50, size=(16, 16))  # photos of another size join at the labelled size
    assert load_dataset(f"folder:{root}", unlabeled=str(tmp_path / "big")).x_unlabeled.shape[1:] == (1, 8, 8)
    np.savez(tmp_path / "big.npz", x=np.zeros((2, 1, 16, 16), dtype=np.uint8))  # arrays are not resized
    with pytest.raises(DataError, match="inputs of shape"):
        load_dataset(f"folder:{root}", unlabeled=str(tmp_path / "big.npz"))


def test_unlabeled_folder_from_the_command_line(tmp_path, capsys):
    root = tmp_path / "pets"
    write_images(root / "cat", 6, 10)
    write_images(root / "dog", 6, 200)
    write_images(tmp_path / "pile", 20, 100)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                f"data.dataset=folder:{root}",
                "data.n_labeled=-1",
                "data.n_test=0",
                "method.name=vat",
                "train.steps=3",
                "train.progress=false",
                "--unlabeled",
                str(tmp_path / "pile"),
                "--run-dir",
                str(run),
            ]
        )
        == 0
    )
    meta = (run / "meta.json").read_text()
    assert '"unlabeled": 20' in meta and '"cat"' in meta


def test_npz_with_channels_last_images_and_an_unlabelled_pile(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "pets.npz"
    np.savez(
        path,
        x=rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8),
        y=np.arange(12) % 2,
        x_unlabeled=rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8),
    )
    ds = load_dataset(f"npz:{path}")
    assert ds.x_train.shape == (12, 3, 8, 8) and ds.x_unlabeled.shape == (30, 3, 8, 8)
    err = capsys.readouterr().err
    assert "read as (N, H, W, C)" in err and "2 classes (the largest label is 1" in err


def test_an_export_of_a_csv_run_predicts_new_rows_by_name(tmp_path, capsys):
    path = blob_csv(tmp_path / "t.csv")
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                f"data.dataset=csv:{path}",
                "data.n_labeled=-1",
                "data.n_test=0",
                "train.steps=40",
                "model.hidden=[16]",
                "train.progress=false",
                "--run-dir",
                str(run),
            ]
        )
        == 0
    )
    assert main(["export", str(run)]) == 0
    new = write_csv(
        tmp_path / "new.csv",
        ["f5", "f4", "f3", "f2", "f1", "f0", "note"],  # other order, an extra column
        [[f"{v:.5f}" for v in reversed(blobs(240)[0][i].tolist())] + ["x"] for i in range(6)],
    )
    capsys.readouterr()
    assert main(["predict", str(run / "model.safetensors"), str(new)]) == 0
    names = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()]
    assert names == ["alpha", "beta", "gamma", "alpha", "beta", "gamma"]


def test_a_divergence_names_the_real_steps(tmp_path):
    import re

    from semireg.errors import DivergedError

    x, y = blobs()
    with pytest.raises(DivergedError) as info:
        semireg.fit(
            nn.Linear(6, 3),
            (x[:30], y[:30]),
            steps=20,
            lr=1e38,
            optimizer="sgd",
            momentum=0.0,
            log_every=5,
            run_dir=tmp_path / "run",
        )
    first, last = map(int, re.search(r"between steps (-?\d+) and (-?\d+)", str(info.value)).groups())
    assert 1 <= first <= last <= 20 and last - first == 4, str(info.value)
