"""Short real runs on ../shared/data/mnist: VAT must beat the labels-only baseline."""

import pytest

from semireg.config import config_for, load_recipe
from semireg.engine import train
from semireg.traindata import data_from_config

from conftest import mnist_available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not mnist_available(), reason="../shared/data/mnist not present")]


# Labels only on this recipe never reached 85 %: 81.74 / 80.79 / 84.86 % at its full budget (docs/results.md,
# seed 001 table) and 85.15 % with the settings below (2026-12-04, one thread). Training that baseline here
# cost ~50 s of the suite's CPU for a number that does not change. (test_ssl_real compares every other
# method with labels only at its own budget; VAT's short run is this one.)
LABELS_ONLY_BEST = 0.8515


def test_vat_beats_labels_only_on_mnist_100_labels(tmp_path):
    recipe = load_recipe("mnist-100-vat")
    short = {"train.steps": 100, "train.unlabeled_batch_size": 64, "train.eval_every": 0,
             "train.progress": False, "data.n_test": 2000}
    cfg = config_for(recipe, "vat", 0, short)
    data, split = data_from_config(cfg)
    assert (len(split.labeled), len(split.test)) == (100, 2000)
    accuracy = train(cfg, tmp_path / "vat", data=data, split=split).metrics["test"]["accuracy"]
    assert accuracy > LABELS_ONLY_BEST + 0.04, accuracy  # measured 91.75 % (2026-12-05; 93.95 at 150 steps)
