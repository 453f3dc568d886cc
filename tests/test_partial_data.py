"""Every entry point (fit, select, fit_system, the estimator) takes data the same ways: `(x, y)` with
unlabelled rows marked in y, a map-style Dataset of `(x, y)` pairs, plus unlabelled inputs; and
refuses bad data with one line naming the argument and the first bad row, before anything trains."""

import importlib

import numpy as np
import pytest
import torch

import semireg
from semireg.api import partition
from semireg.errors import DataError


def rows(n=60, d=4, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    x = torch.randn(k, d, generator=g)[y] * 3 + torch.randn(n, d, generator=g)
    return x, y


class Pairs(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_the_three_ways_give_the_same_split():
    x, y = rows()
    y_semi = torch.where(torch.arange(len(y)) % 4 == 0, y, -1)
    marked = partition((x, y_semi))
    dataset = partition(Pairs(x, y_semi))
    pair_plus_pool = partition((x[y_semi >= 0], y[y_semi >= 0]), x[y_semi < 0])
    for x_l, y_l, x_u in (marked, dataset, pair_plus_pool):
        assert torch.equal(torch.as_tensor(x_l), x[y_semi >= 0]) and list(y_l) == y[y_semi >= 0].tolist()
        assert torch.equal(torch.as_tensor(x_u), x[y_semi < 0])


def test_fit_and_select_take_minus_one_rows_and_datasets(tmp_path):
    x, y = rows()
    y_semi = torch.where(torch.arange(len(y)) % 4 == 0, y, -1)
    result = semireg.fit("mlp", (x, y_semi), method="fixmatch", steps=5, batch_size=8, hidden=[16])
    assert result.predict_proba(x).shape == (60, 3) and np.allclose(result.predict_proba(x).sum(1), 1, atol=1e-5)
    assert set(result.predict(x).tolist()) <= {0, 1, 2}
    result = semireg.fit("mlp", Pairs(x, y_semi), method="fixmatch", steps=5, batch_size=8, hidden=[16])
    assert result.metrics["steps"] == 5
    names = np.array(["a", "b", "c"], dtype=object)[y.numpy()]
    names[y_semi.numpy() < 0] = None
    assert set(semireg.fit("mlp", (x, names), method="supervised", steps=3, hidden=[16]).predict(x)) <= {"a", "b", "c"}
    sel = semireg.select(
        (x, y_semi), methods=["supervised"], budget="20s", folds=2, out=tmp_path / "sel", progress=False, hidden=[16]
    )
    assert sel.recommended == "supervised"


def test_registries_are_listed():
    assert "fixmatch" in semireg.list_methods() and "mlp" in semireg.list_models()
    assert "disentangle" in semireg.list_systems()
    importlib.import_module("semireg.evaluation")  # the modules have their own names ...
    importlib.import_module("semireg.selection")
    assert callable(semireg.evaluate) and callable(semireg.select)  # ... so importing them shadows no function


BAD = {
    "every row unlabelled": (lambda x, y: (x, torch.full_like(y, -1)), r"data y: every row is unlabelled"),
    "mixed label types": (
        lambda x, y: (x, [0, "b"] + [1] * (len(y) - 2)),
        r"data y: mixed label types: .*row 1 is 'b'",
    ),
    "NaN in x": (
        lambda x, y: (torch.where(torch.arange(len(x))[:, None] == 7, float("nan"), x), y),
        r"data x: nan in row 7",
    ),
    "inf in x": (
        lambda x, y: (torch.where(torch.arange(len(x))[:, None] == 3, float("inf"), x), y),
        r"data x: inf in row 3",
    ),
    "a dataset of single items": (lambda x, y: [x[i] for i in range(len(x))], r"data: expected \(x, y\)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_data_is_one_line_naming_the_first_bad_row(case):
    make, message = BAD[case]
    x, y = rows()
    with pytest.raises(DataError, match=message) as info:
        semireg.fit("mlp", make(x, y), method="fixmatch", steps=1)
    assert "\n" not in str(info.value)


def test_errors_name_the_users_own_row_not_a_row_of_the_labelled_part():
    x, y = rows()
    y_semi = torch.where(torch.arange(len(y)) < 10, -1, y)  # the first 10 rows unlabelled
    x = torch.where(torch.arange(len(x))[:, None] == 12, float("nan"), x)
    with pytest.raises(DataError, match=r"data x: nan in row 12"):
        semireg.fit("mlp", (x, y_semi), method="fixmatch", steps=1)
    with pytest.raises(DataError, match=r"row 15 is -3"):
        semireg.fit("mlp", (rows()[0], torch.where(torch.arange(len(y)) == 15, -3, y_semi)), steps=1)


def test_a_dataset_whose_items_are_not_pairs():
    class Singles(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return (torch.zeros(3),) if i == 2 else (torch.zeros(3), 0)

    with pytest.raises(DataError, match=r"data: item 2 is a tuple of 1; each item must be a pair \(x, y\)"):
        semireg.fit("mlp", Singles(), steps=1)


def test_a_class_with_no_labelled_row():
    x, y = rows()
    with pytest.raises(DataError, match=r"labeled y: class 3 of 4 \(num_classes given\) has no labelled sample"):
        semireg.fit("mlp", (x, y), steps=1, num_classes=4)


def test_fit_system_refuses_unlabelled_rows_it_would_not_use():
    x, y = rows()
    with pytest.raises(DataError, match=r"data y: row 0 is unlabelled"):
        semireg.fit_system("disentangle", (x, torch.where(torch.arange(len(y)) < 2, -1, y)), steps=1)


def test_the_estimator_refuses_the_same_bad_data():
    x, y = rows()
    clf = semireg.SemiSupervisedClassifier(steps=1)
    with pytest.raises(ValueError, match="every row is unlabelled"):
        clf.fit(x.numpy(), np.full(len(y), -1))
    with pytest.raises(ValueError, match="mixed label types"):
        clf.fit(x.numpy(), np.array([0, "b"] + [1] * (len(y) - 2), dtype=object))
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(np.where(np.arange(len(x))[:, None] == 5, np.nan, x.numpy()), y.numpy())
