"""Short real runs on ../shared/data/mnist (100 labels): every registered method that learns from
unlabelled images must beat the labels-only baseline trained the same way. The registry is
iterated, so a new method gets this test for free."""

import json

import pytest
from filelock import FileLock  # a dependency of torch

from semireg.config import config_for, load_recipe
from semireg.engine import train
from semireg.traindata import data_from_config
from semireg.methods import METHODS

from conftest import IN_WORKER, TRAIN_THREADS, mnist_available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not mnist_available(), reason="../shared/data/mnist not present")]

# Short and cheap: 2 unlabelled images per labelled one (the papers' mu is 7 for the FixMatch
# family), every ramp-up over the first 20%, thresholds as the methods define them, 200 steps. Three
# methods learn too slowly from unlabelled images for that and get 600 steps (measured 2026-12-04, one
# thread, as in the suite: at 200 steps against labels only's 87.45 %, Mean Teacher 89.42, Pi-model
# 88.74, pseudo-label 88.74 %; VAT 91.54 % passes at 200 and so no longer pays for 600, ~180 s of CPU).
# Each is compared with the labels-only baseline at the same number of steps.
# data.n_val = 0: the step budgets below were measured on the split without a validation set; holding out
# 5,000 images draws other labelled images, on which FixMatch gained only +1.8 points at 200 steps (2026-12-04).
SHORT = {"train.mu": 2, "train.eval_every": 0, "train.progress": False, "train.threads": TRAIN_THREADS, "data.n_val": 0}
MARGIN = 0.03
SEMI_SUPERVISED = sorted(name for name, spec in METHODS.items()
                         if spec.uses_unlabeled(spec.options()) and not spec.needs_teacher)


SLOW_LEARNERS = {"meanteacher", "pimodel", "pseudolabel"}
# Mean Teacher at its paper's mu of 1: 94.01 % at 600 steps against labels only's 89.09 % (2026-12-04, one
# thread), for about three quarters of the CPU it takes at mu 2. (The Pi-model and pseudo-label at mu 1 passed
# by only +3.3 points, too near the margin, and keep mu 2.)
MU = {"meanteacher": 1}


def steps_for(method: str) -> int:
    return 600 if method in SLOW_LEARNERS else 200


def _short_config(method: str, steps: int):
    recipe = load_recipe("mnist-100-ssl")
    overrides = {**SHORT, "train.steps": steps, "train.mu": MU.get(method, SHORT["train.mu"])}
    if method != "supervised":
        overrides["method"] = {"name": method}
        if "warmup" in {f for f in METHODS[method].options.__dataclass_fields__}:
            overrides["method.warmup"] = 0.2
    return config_for(recipe, "", 0, overrides)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """(data, split, accuracy of labels only after `steps` steps), trained once per step count for
    the whole session: under pytest-xdist the workers share the accuracy through a file, so the
    baseline is not trained again in every worker (~100 s of CPU each time here)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if IN_WORKER else base  # this session's directory, the same for every xdist worker
    cache = {}

    def at(steps: int):
        if steps not in cache:
            cfg = _short_config("supervised", steps)
            data, split = data_from_config(cfg)
            assert (len(split.labeled), len(split.unlabeled), len(split.val)) == (100, 59_900, 0)
            stored = shared / f"ssl-real-baseline-{steps}.json"
            with FileLock(str(stored) + ".lock"):
                if not stored.exists():
                    result = train(cfg, tmp_path_factory.mktemp(f"baseline{steps}"), data=data, split=split)
                    stored.write_text(json.dumps({"accuracy": result.metrics["test"]["accuracy"]}))
                accuracy = json.loads(stored.read_text())["accuracy"]
            assert accuracy > 0.6, accuracy  # 100 labels alone: well above chance (0.1)
            cache[steps] = (data, split, accuracy)
        return cache[steps]
    return at


# Methods known to fall short at these budgets, as strict xfails (the day one passes, its marker
# fails and must go). Mean Teacher was one until its EMA teacher got the warm-up (optim.EMA): at
# 600 steps it was below labels only (81.7 vs 89.1 %, 2026-11-23) while its teacher still held most
# of the initial weights; with the warm-up 94.4 vs 89.5 % (2026-12-02, precision auto).
_SLOW_STARTERS: dict[str, str] = {}


@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.xfail(reason=_SLOW_STARTERS[m], strict=True))
                                    if m in _SLOW_STARTERS else m for m in SEMI_SUPERVISED])
def test_a_short_run_beats_the_labels_only_baseline(method, baseline, tmp_path):
    steps = steps_for(method)
    data, split, baseline = baseline(steps)
    result = train(_short_config(method, steps), tmp_path / method, data=data, split=split)
    accuracy = result.metrics["test"]["accuracy"]
    assert accuracy > baseline + MARGIN, f"{method} ({steps} steps): {accuracy:.4f} vs labels only {baseline:.4f}"
