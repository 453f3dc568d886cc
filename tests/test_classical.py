"""Classical methods (label spreading, self-training): each registered one is fitted, reloaded and run
through the API, the estimator and a run directory; the pieces are checked against what they compute."""

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import semireg
from semireg.classical import CLASSICAL
from semireg.classical.neighbours import nearest
from semireg.classical.selftraining import logistic_regression, most_confident_per_class
from semireg.config import from_kwargs, method_options
from semireg.errors import ConfigError
from semireg.export import export_run, load_exported


def blobs(n_per_class=60, k=3, d=5, labelled=2, seed=0):
    """k well separated Gaussian blobs; `labelled` labelled rows per class, the rest unlabelled (y = -1)."""
    g = torch.Generator().manual_seed(seed)
    centres = 8.0 * torch.eye(k, d)
    x = torch.cat([centres[c] + torch.randn(n_per_class, d, generator=g) for c in range(k)])  # (k * n, d)
    y = torch.arange(k).repeat_interleave(n_per_class)
    y_semi = torch.full_like(y, -1)
    for c in range(k):
        y_semi[c * n_per_class : c * n_per_class + labelled] = c
    return x, y, y_semi


def fitted(name, x, y_semi, k=3, **options):
    spec = CLASSICAL[name]
    opts = method_options(from_kwargs({"method.name": name, **{f"method.{o}": v for o, v in options.items()}}))
    labelled = y_semi >= 0
    return spec.fit(x[labelled], y_semi[labelled], x[~labelled], k, opts), opts


@pytest.mark.parametrize("name", sorted(CLASSICAL))
def test_each_classical_method_labels_separated_blobs_and_reloads_exactly(name):
    x, y, y_semi = blobs()
    model, opts = fitted(name, x, y_semi)
    logits = model(x)  # (N, K)
    assert logits.shape == (len(x), 3)
    assert (logits.argmax(1) == y).all()  # blobs 8 standard deviations apart: every row
    again = CLASSICAL[name].load({k: v.clone() for k, v in model.state_dict().items()}, opts)
    assert torch.equal(again(x), logits)
    x_new = x[:7] + 0.1
    assert torch.equal(again(x_new), model(x_new))


@pytest.mark.parametrize("name", sorted(CLASSICAL))
def test_each_classical_method_predicts_the_same_on_a_uniformly_rescaled_copy(name):
    """Neighbours do not change with a common scale; self-training's regularised fit does, so it is
    compared on predictions of well separated data only."""
    x, _, y_semi = blobs(seed=1)
    a, _ = fitted(name, x, y_semi)
    b, _ = fitted(name, 3.0 * x, y_semi)
    assert torch.equal(a(x).argmax(1), b(3.0 * x).argmax(1))


def test_nearest_matches_a_full_sort_across_blocks():
    g = torch.Generator().manual_seed(0)
    ref, query = torch.randn(300, 4, generator=g), torch.randn(50, 4, generator=g)
    expected = torch.cdist(query.double(), ref.double()).argsort(dim=1)[:, :6]
    assert torch.equal(nearest(query, ref, 6, block=7), expected)


def test_label_spreading_spreads_along_the_graph_not_across_it():
    """Two parallel chains 3 apart (neighbours within a chain are 0.26 apart), each labelled at an
    opposite end: every row gets its own chain's label, also the rows at the unlabelled end, which
    lie nearer (in a straight line) to the other chain's labelled row than to their own."""
    t = torch.linspace(0, 10, 40)[:, None]  # (40, 1)
    x = torch.cat([torch.cat([t, torch.zeros_like(t)], 1), torch.cat([t, torch.full_like(t, 3.0)], 1)])  # (80, 2)
    y_semi = torch.full((80,), -1)
    y_semi[0], y_semi[79] = 0, 1  # chain a at x = 0, chain b at x = 10
    model, _ = fitted("labelspreading", x, y_semi, k=2, iterations=100)  # 40 hops to the far end
    pred = model(x).argmax(1)
    assert torch.dist(x[40], x[0]) < torch.dist(x[40], x[79])  # chain b's left end: nearer to label 0
    assert (pred[:40] == 0).all() and (pred[40:] == 1).all()


def test_logistic_regression_minimises_scikit_learns_objective():
    x, y, _ = blobs(n_per_class=30, d=4, seed=2)
    x = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(3)) * 4  # overlapping: a finite optimum
    ours = logistic_regression(x.double(), y, 3, c=0.5, max_iter=500)
    theirs = LogisticRegression(C=0.5, max_iter=5000, tol=1e-10).fit(x.double().numpy(), y.numpy())
    np.testing.assert_allclose(ours.weight.numpy(), theirs.coef_, atol=1e-4)
    np.testing.assert_allclose(ours.bias.numpy(), theirs.intercept_, atol=1e-4)


def test_curriculum_takes_the_most_confident_share_of_each_predicted_class():
    confidence = torch.tensor([0.9, 0.5, 0.8, 0.6, 0.99, 0.7, 0.55, 0.4])
    label = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2])
    chosen = most_confident_per_class(confidence, label, 0.5)
    # class 0: the best 2 of 4; class 1: round(1.5) = 2 of 3; class 2: at least its one row
    assert chosen.tolist() == [True, False, True, False, True, True, False, True]
    assert most_confident_per_class(confidence, label, 1.0).all()


def test_curriculum_relabels_every_unlabelled_row_by_the_model_of_the_round_before():
    """With one round, curriculum self-training is one refit on the labelled rows and every unlabelled row,
    labelled by the labels-only fit; the threshold selection with a threshold no row reaches is that fit."""
    x, _, y_semi = blobs(n_per_class=30, d=4, seed=6)
    x = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(7)) * 4  # overlapping classes
    labelled = y_semi >= 0
    x_l, y_l, x_u = x[labelled].double(), y_semi[labelled], x[~labelled].double()
    first = logistic_regression(x_l, y_l, 3, c=1.0, max_iter=200)
    expected = logistic_regression(torch.cat([x_l, x_u]), torch.cat([y_l, first(x_u).argmax(1)]), 3, 1.0, 200)
    model, _ = fitted("selftraining", x, y_semi, selection="curriculum", rounds=1)
    torch.testing.assert_close(model.weight, expected.weight)
    untouched, _ = fitted("selftraining", x, y_semi, selection="threshold", threshold=1.01)
    torch.testing.assert_close(untouched.weight, first.weight)


def test_an_unknown_self_training_selection_is_refused():
    x, _, y_semi = blobs()
    with pytest.raises(ConfigError, match="method.selection: 'best' is not one of threshold, curriculum"):
        fitted("selftraining", x, y_semi, selection="best")


@pytest.mark.parametrize("name", sorted(CLASSICAL))
def test_classical_methods_run_through_fit_with_a_run_directory_and_export(tmp_path, name):
    x, y, y_semi = blobs(seed=4)
    result = semireg.fit(
        "mlp", (x.numpy(), y_semi.numpy()), method=name, eval_data=(x.numpy(), y.numpy()), run_dir=tmp_path / "run"
    )
    assert result.metrics["test"]["accuracy"] == 1.0
    assert (result.predict(x.numpy()) == y.numpy()).all()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["method"]["name"] == name
    for produced in ("meta.json", "metrics.jsonl", "results.json", "checkpoint.pt", "report.html"):
        assert (tmp_path / "run" / produced).exists(), produced
    model, info = load_exported(export_run(tmp_path / "run"))
    assert torch.equal(model(x).argmax(1), y)


@pytest.mark.parametrize("key,value", [("lr", 0.1), ("model.name", "wrn"), ("steps", 50), ("augment.noise", 0.1)])
def test_a_key_a_classical_method_does_not_read_is_refused(key, value):
    with pytest.raises(
        ConfigError, match=f"{key.split('.')[-1]}: the classical method 'selftraining' does not read it"
    ):
        from_kwargs({"method.name": "selftraining", key: value})


@pytest.mark.parametrize("name", sorted(CLASSICAL))
def test_the_estimator_fits_classical_methods_and_pickles_them(name):
    import pickle

    x, y, y_semi = blobs(seed=5)
    clf = semireg.SemiSupervisedClassifier(method=name, random_state=0).fit(x.numpy(), y_semi.numpy())
    assert (clf.predict(x.numpy()) == y.numpy()).all()
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(x.numpy()), clf.predict_proba(x.numpy()))


def test_list_classical_names_the_registry():
    assert semireg.list_classical() == sorted(CLASSICAL) and {"labelspreading", "selftraining"} <= set(CLASSICAL)
