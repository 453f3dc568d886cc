"""Short real runs on ../shared/data/mnist: VAT must beat the labels-only baseline."""

import pytest

from semireg.config import config_for, load_recipe
from semireg.engine import train
from semireg.traindata import data_from_config

from conftest import mnist_available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not mnist_available(), reason="../shared/data/mnist not present")]


def test_vat_beats_labels_only_on_mnist_100_labels(tmp_path):
    recipe = load_recipe("mnist-100-vat")
    short = {"train.steps": 150, "train.unlabeled_batch_size": 64, "train.eval_every": 0,
             "train.progress": False, "data.n_test": 2000}
    acc = {}
    for variant in ("baseline", "vat"):
        cfg = config_for(recipe, variant, 0, short)
        data, split = data_from_config(cfg)
        assert (len(split.labeled), len(split.test)) == (100, 2000)
        result = train(cfg, tmp_path / variant, data=data, split=split)
        acc[variant] = result.metrics["test"]["accuracy"]
    assert acc["baseline"] > 0.5, acc  # well above chance (0.1) with 100 labels alone
    assert acc["vat"] > acc["baseline"] + 0.04, acc
