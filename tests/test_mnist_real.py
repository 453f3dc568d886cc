"""Short real runs on ../shared/data/mnist: VAT must beat the labels-only baseline."""

import json
from pathlib import Path

import pytest
from conftest import mnist_available

from semireg.config import config_for, load_recipe
from semireg.engine import train
from semireg.traindata import data_from_config

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not mnist_available(), reason="../shared/data/mnist not present")]


# The bar, derived as tests/test_ssl_real.py derives its bars (read that file's comment): halfway between
# labels only's best run and VAT's worst at 150 steps, over training seeds 0-2 on two float32 numeric paths
# (benchmarks/results/short-run-spread.json: cases vatlabels-150 and vat-150).
SPREAD = json.loads(
    (Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "short-run-spread.json").read_text()
)
LABELS_ONLY_BEST, VAT_WORST = SPREAD["vatlabels-150"]["highest"], SPREAD["vat-150"]["lowest"]


def short_run(variant: str, steps: int, run_dir: Path) -> float:
    """Test accuracy of the recipe's `variant` after `steps` short steps, on 2,000 held-out images."""
    short = {
        "train.steps": steps,
        "train.unlabeled_batch_size": 64,
        "train.eval_every": 0,
        "train.progress": False,
        "data.n_test": 2000,
        "train.precision": "32-true",
    }  # the bar is a float32 measurement: one precision on every CPU kind
    cfg = config_for(load_recipe("mnist-100-vat"), variant, 0, short)
    data, split = data_from_config(cfg)
    assert (len(split.labeled), len(split.test)) == (100, 2000)
    return train(cfg, run_dir, data=data, split=split).metrics["test"]["accuracy"]


def test_vat_beats_labels_only_on_mnist_100_labels(tmp_path):
    accuracy = short_run("vat", 150, tmp_path / "vat")
    bar = LABELS_ONLY_BEST + (VAT_WORST - LABELS_ONLY_BEST) / 2
    assert accuracy > bar, (
        f"{accuracy:.4f}; bar {bar:.4f} (labels only's best {LABELS_ONLY_BEST:.4f}, VAT's worst {VAT_WORST:.4f})"
    )


def test_the_bar_is_measured_and_separates_vat_from_labels_only():
    assert SPREAD["vat-150"]["n"] >= 6 and SPREAD["vatlabels-150"]["n"] >= 6
    assert VAT_WORST - LABELS_ONLY_BEST >= 0.015
