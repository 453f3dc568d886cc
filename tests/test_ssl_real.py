"""Short real runs on ../shared/data/mnist (100 labels): every registered method that learns from
unlabelled images must beat the labels-only baseline trained the same way. The registry is
iterated, so a new method gets this test for free."""

import pytest

from semireg.config import config_for, load_recipe
from semireg.engine import data_from_config, train
from semireg.methods import METHODS

from conftest import mnist_available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not mnist_available(), reason="../shared/data/mnist not present")]

# Short and cheap: 200 steps, 2 unlabelled images per labelled one (the papers' mu is 7 for the
# FixMatch family), every ramp-up over the first 20%, thresholds as the methods define them.
SHORT = {"train.steps": 200, "train.mu": 2, "train.eval_every": 0, "train.progress": False, "train.threads": 2}
MARGIN = 0.03
SEMI_SUPERVISED = sorted(name for name, spec in METHODS.items()
                         if spec.uses_unlabeled(spec.options()) and not spec.needs_teacher)


def _short_config(method: str, recipe_name: str = "mnist-100-ssl"):
    recipe = load_recipe(recipe_name)
    overrides = dict(SHORT)
    if method != "supervised":
        overrides["method"] = {"name": method}
        if "warmup" in {f for f in METHODS[method].options.__dataclass_fields__}:
            overrides["method.warmup"] = 0.2
    return config_for(recipe, "", 0, overrides)


@pytest.fixture(scope="module")
def mnist_100(tmp_path_factory):
    cfg = _short_config("supervised")
    data, split = data_from_config(cfg)
    assert (len(split.labeled), len(split.unlabeled)) == (100, 59_900)
    baseline = train(cfg, tmp_path_factory.mktemp("baseline"), data=data, split=split)
    accuracy = baseline.metrics["test"]["accuracy"]
    assert accuracy > 0.6, accuracy  # 100 labels alone: well above chance (0.1)
    return data, split, accuracy


@pytest.mark.parametrize("method", SEMI_SUPERVISED)
def test_a_short_run_beats_the_labels_only_baseline(method, mnist_100, tmp_path):
    data, split, baseline = mnist_100
    result = train(_short_config(method), tmp_path / method, data=data, split=split)
    accuracy = result.metrics["test"]["accuracy"]
    assert accuracy > baseline + MARGIN, f"{method}: {accuracy:.4f} vs labels only {baseline:.4f}"
