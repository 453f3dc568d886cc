"""A short real run of the disentangling autoencoder on ../shared/data/mnist."""

import pytest
import torch
from conftest import SHARED_DATA, TRAIN_THREADS, mnist_available

import semireg
from semireg.data import load_dataset

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not mnist_available(), reason="../shared/data/mnist not present")]


def disentangle_metrics(run_dir, seed=0, threads=TRAIN_THREADS, precision="auto") -> dict:
    """The test's short run (10,000 training digits, 300 steps) with training seed `seed`, at the
    precision `auto` picks on this CPU (as a user gets it) unless told another."""
    ds = load_dataset("mnist", str(SHARED_DATA))
    gen = torch.Generator().manual_seed(0)
    train = torch.randperm(len(ds.y_train), generator=gen)[:10000]
    test = torch.randperm(len(ds.y_test), generator=gen)[:2000]
    result = semireg.fit_system(
        "disentangle",
        (ds.x_train[train], ds.y_train[train]),
        steps=300,
        batch_size=128,
        seed=seed,
        eval_data=(ds.x_test[test], ds.y_test[test]),
        run_dir=run_dir,
        threads=threads,
        precision=precision,
        probe_train=5000,
        probe_epochs=5,
        judge_epochs=1,
        tsne_points=300,
    )
    return result.metrics


def test_disentangle_puts_the_label_in_s_and_swaps_digits(tmp_path):
    m = disentangle_metrics(tmp_path / "run")
    assert m["clf_s_accuracy"] > 0.85, m  # chance is 0.10
    assert m["s_probe_mlp"] > 0.85, m
    assert m["swap_accuracy"] > 0.6, m  # an independent CNN reads the class of s in dec(z_i, s_j)
    assert m["z_probe_mlp"] < m["s_probe_mlp"] - 0.2, m  # z holds much less of the label than s
    assert m["recon_bce_other_z"] > m["recon_bce"] + 0.005, m  # ...but z is used: not a collapsed code
    for picture in ("swaps.png", "analogies.png", "tsne_s.png", "tsne_z.png", "curves.png"):
        assert (tmp_path / "run" / picture).stat().st_size > 1000, picture
