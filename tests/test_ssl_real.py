"""Short real runs on ../shared/data/mnist (100 labels): every registered method that learns from
unlabelled images must beat labels only trained the same way
(LABELS_ONLY, measured with this file's own `__main__`). The registry is
iterated, so a new method gets this test for free."""

from pathlib import Path

import pytest
import torch
from conftest import TRAIN_THREADS, mnist_available

from semireg.config import config_for, load_recipe
from semireg.engine import train
from semireg.methods import METHODS
from semireg.traindata import data_from_config

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not mnist_available(), reason="../shared/data/mnist not present")]

# Short and cheap: every ramp-up over the first 20%, thresholds as the methods define them, and each method's
# budget (steps, unlabelled images per labelled one) the least measured to clear the margin with room to spare.
# Measured 2026-12-05 on the 2,000 test images below, one thread as in the suite, labels only at the same steps
# in LABELS_ONLY (`python tests/test_ssl_real.py 200 400 600 fixmatch flexmatch ...`):
#   200 steps, mu 1: FlexMatch 92.40, FreeMatch 92.25, UDA 90.90 against 86.95; FixMatch at mu 2 90.95 (at mu 1,
#   on all 10,000 images, it cleared labels only by 3.75 only); 400 steps, mu 1: Mean Teacher 92.90 against 88.25;
#   600 steps: Pi-model at mu 1 92.65 against 88.45 (at mu 2 93.95; at 400 steps, mu 2, 91.75: +3.50),
#   pseudo-label at mu 2 92.45 (at mu 1 91.95: +3.50; at 400 steps, mu 2, 90.60).
# (The same budgets on all 10,000 test images, earlier the same day: FlexMatch 93.07, FreeMatch 93.13, UDA 91.68,
# FixMatch at mu 1 91.20 against 87.45; Mean Teacher 93.25 against 88.69; Pi-model and pseudo-label fell short
# at 400 steps, mu 1, and at 300 steps with a 5% ramp-up.)
# Each is compared with the labels-only baseline at the same number of steps.
# data.n_val = 0: the step budgets below were measured on the split without a validation set; holding out
# 5,000 images draws other labelled images, on which FixMatch gained only +1.8 points at 200 steps (2026-12-04).
# data.n_test = 2000: a fixed 2,000 of the official 10,000 test images (the same for every method and seed), as
# test_mnist_real.py's holdout; evaluating all 10,000 cost each short run ~9 s of its worker.
# train.precision = 32-true: LABELS_ONLY and the budgets are float32 measurements (precision auto on the AMD EPYC that
# measured them); on a CPU with AMX, auto would be bf16-mixed, another numeric path than the one the margins hold for.
SHORT = {
    "train.eval_every": 0,
    "train.progress": False,
    "train.threads": TRAIN_THREADS,
    "data.n_val": 0,
    "data.n_test": 2000,
    "train.precision": "32-true",
}
MARGIN = 0.03
# Methods whose short real run on MNIST-100 is another test's, so the suite does not pay for two (~100 s of CPU).
COVERED_ELSEWHERE = {"vat": ("test_mnist_real.py", "test_vat_beats_labels_only_on_mnist_100_labels")}
SEMI_SUPERVISED = sorted(
    name
    for name, spec in METHODS.items()
    if spec.uses_unlabeled(spec.options()) and not spec.needs_teacher and name not in COVERED_ELSEWHERE
)

DEFAULT_BUDGET = {"steps": 200, "mu": 2}  # a new method starts here
BUDGET = {
    "flexmatch": {"steps": 200, "mu": 1},
    "freematch": {"steps": 200, "mu": 1},
    "uda": {"steps": 200, "mu": 1},
    "meanteacher": {"steps": 400, "mu": 1},
    "pimodel": {"steps": 600, "mu": 1},
    "pseudolabel": {"steps": 600, "mu": 2},
}


def budget_of(method: str) -> dict:
    return BUDGET.get(method, DEFAULT_BUDGET)


def short_config(method: str, steps: int, mu: int = 1):
    recipe = load_recipe("mnist-100-ssl")
    overrides = {**SHORT, "train.steps": steps, "train.mu": mu}
    if method != "supervised":
        overrides["method"] = {"name": method}
        if "warmup" in {f for f in METHODS[method].options.__dataclass_fields__}:
            overrides["method.warmup"] = 0.2
    return config_for(recipe, "", 0, overrides)


# Labels only at the settings above (seed 0, one thread, precision auto = float32 on this 2-core AMD EPYC, the
# 2,000 test images, 2026-12-05), by steps, measured by `python tests/test_ssl_real.py 200 400 600`. Every method is compared with
# these instead of training the baseline in each test session: the baseline does not change with the method, and
# training it cost ~135 s of the suite's CPU, with a worker idle behind the other's lock while it trained.
# Change the recipe, the SHORT settings or the engine's arithmetic, and these must be measured again.
LABELS_ONLY = {200: 0.8695, 400: 0.8825, 600: 0.8845}


def labels_only(steps: int, tmp_path) -> float:
    """Labels only trained as the tests train the methods (the measurement behind LABELS_ONLY)."""
    cfg = short_config("supervised", steps)
    return accuracy_of(cfg, tmp_path / f"labels-only-{steps}")


def accuracy_of(cfg, run_dir: Path) -> float:
    """Test accuracy of a short run, after checking it trains on the split the budgets were measured on."""
    data, split = data_from_config(cfg)
    assert (len(split.labeled), len(split.unlabeled), len(split.val), len(data.eval_sets["test"][1])) == (
        100,
        59_900,
        0,
        2000,
    )
    return train(cfg, run_dir, data=data, split=split).metrics["test"]["accuracy"]


# Methods known to fall short at these budgets, as strict xfails (the day one passes, its marker
# fails and must go). Mean Teacher was one until its EMA teacher got the warm-up (optim.EMA): at
# 600 steps it was below labels only (81.7 vs 89.1 %, 2026-11-23) while its teacher still held most
# of the initial weights; with the warm-up 94.4 vs 89.5 % (2026-12-02, precision auto).
_SLOW_STARTERS: dict[str, str] = {}


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(m, marks=pytest.mark.xfail(reason=_SLOW_STARTERS[m], strict=True)) if m in _SLOW_STARTERS else m
        for m in SEMI_SUPERVISED
    ],
)
def test_a_short_run_beats_the_labels_only_baseline(method, tmp_path):
    budget = budget_of(method)
    steps, mu = budget["steps"], budget["mu"]
    accuracy = accuracy_of(short_config(method, steps, mu), tmp_path / method)
    baseline = LABELS_ONLY[steps]
    assert accuracy > baseline + MARGIN, (
        f"{method} ({steps} steps, mu {mu}): {accuracy:.4f} vs labels only {baseline:.4f}"
    )


def test_the_methods_left_out_here_have_their_short_run_elsewhere():
    here = Path(__file__).parent
    for method, (module, test) in COVERED_ELSEWHERE.items():
        assert f"def {test}(" in (here / module).read_text(), (method, module, test)
        assert method in METHODS


if __name__ == "__main__":
    # python tests/test_ssl_real.py STEPS ...: measure LABELS_ONLY again;
    # python tests/test_ssl_real.py METHOD ...: each method's short run at its budget (its margin over LABELS_ONLY).
    import sys
    import tempfile

    SHORT["train.threads"] = (
        1  # as in the suite's xdist workers (at 2 threads the float order, and so the figure, differ)
    )
    torch.set_num_threads(1)
    for arg in sys.argv[1:]:
        if arg.isdigit():
            print(f"labels only, {arg} steps: {labels_only(int(arg), Path(tempfile.mkdtemp())):.4f}", flush=True)
            continue
        b = budget_of(arg)
        acc = accuracy_of(short_config(arg, b["steps"], b["mu"]), Path(tempfile.mkdtemp()) / arg)
        print(
            f"{arg}, {b['steps']} steps, mu {b['mu']}: {acc:.4f} (labels only {LABELS_ONLY[b['steps']]:.4f})",
            flush=True,
        )
