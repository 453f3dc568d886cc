"""`SemiSupervisedClassifier` as scikit-learn sees it: its estimator checks, pipelines, model
selection, pickling, and the ways users hold semi-supervised data (y == -1, None, NaN, strings;
numpy, pandas, torch; vectors and images)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from semireg import SemiSupervisedClassifier

# Small and fast: each estimator check fits several times on a few dozen rows.
QUICK = {"method": "uda", "steps": 80, "random_state": 0, "options": {"batch_size": 16, "model.hidden": [32, 32]}}

# Checks that cannot apply, with the reason (scikit-learn's own mechanism: they run and must fail).
EXPECTED_FAILED_CHECKS: dict[str, str] = {
    "check_classifiers_classes": "its last problem names the two classes -1 and 1, and -1 marks an unlabelled row "
    "(scikit-learn's semi-supervised convention): one class is left. A user whose "
    "classes include -1 passes unlabeled=None (only None and NaN mark unlabelled rows).",
}


@parametrize_with_checks([SemiSupervisedClassifier(**QUICK)], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def blobs(n=240, d=6, k=3, unlabelled=0.8, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    y = np.arange(n) % k
    x = centres[y] + rng.normal(size=(n, d))
    y_semi = y.copy()
    y_semi[rng.rand(n) < unlabelled] = -1
    return x, y, y_semi


def quick(**changes):
    return SemiSupervisedClassifier(**{**QUICK, **changes})


def test_in_a_pipeline_with_cross_validation_and_a_grid_search():
    """-1 rows in every fold: fit learns from them, the default score skips them."""
    x, y, y_semi = blobs()
    pipe = Pipeline([("scale", StandardScaler()), ("clf", quick())])
    scores = cross_val_score(pipe, x, y_semi, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.9, scores  # well-separated blobs; chance is 1/3
    search = GridSearchCV(pipe, {"clf__method": ["supervised", "fixmatch"]}, cv=2).fit(x, y_semi)
    assert search.best_params_["clf__method"] in ("supervised", "fixmatch")
    assert search.best_estimator_.named_steps["clf"].classes_.tolist() == [0, 1, 2]


def test_the_score_leaves_out_unlabelled_rows_and_counts_the_labelled_ones():
    x, y, y_semi = blobs()
    clf = quick().fit(x, y_semi)
    labelled = y_semi != -1
    expected = float((clf.predict(x[labelled]) == y[labelled]).mean())
    assert clf.score(x, y_semi) == pytest.approx(expected)
    wrong = y_semi.copy()
    wrong[labelled] = (wrong[labelled] + 1) % 3  # every labelled row now disagrees with a good model
    assert clf.score(x, wrong) < expected - 0.5


def test_pickle_round_trip_gives_identical_probabilities_without_pickled_torch_code():
    x, _, y_semi = blobs()
    clf = quick().fit(x, y_semi)
    blob = pickle.dumps(clf)
    assert b"torch.nn.modules" not in blob and b"semireg.models" not in blob  # weights as safetensors bytes
    again = pickle.loads(blob)
    np.testing.assert_array_equal(clf.predict_proba(x), again.predict_proba(x))
    np.testing.assert_allclose(again.predict_proba(x).sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("marker", [None, float("nan"), "?"])
def test_labels_of_any_type_with_their_unlabelled_mark(marker):
    x, y, y_semi = blobs()
    names = np.array(["cat", "dog", "owl"], dtype=object)[y]
    names[y_semi == -1] = marker
    clf = quick(unlabeled="?" if marker == "?" else -1).fit(x, names)
    assert clf.classes_.tolist() == ["cat", "dog", "owl"]
    assert set(clf.predict(x)) <= {"cat", "dog", "owl"}
    assert clf.score(x, names) > 0.9


def test_minus_one_can_be_a_class_when_the_mark_is_none():
    x, y, _ = blobs()
    labels = np.where(y == 0, -1, y)
    assert quick(unlabeled=None).fit(x, labels).classes_.tolist() == [-1, 1, 2]


def test_inputs_as_numpy_pandas_and_torch_give_the_same_model():
    pd = pytest.importorskip("pandas")
    x, _, y_semi = blobs()
    ref = quick().fit(x, y_semi).predict_proba(x)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    from_pandas = quick().fit(frame, pd.Series(y_semi))
    assert from_pandas.feature_names_in_.tolist() == list(frame.columns)
    np.testing.assert_allclose(from_pandas.predict_proba(frame), ref, atol=1e-6)
    from_torch = quick().fit(torch.as_tensor(x), torch.as_tensor(y_semi))
    np.testing.assert_allclose(from_torch.predict_proba(torch.as_tensor(x)), ref, atol=1e-6)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_images_in_either_layout(layout):
    g = torch.Generator().manual_seed(0)
    templates = torch.rand(3, 1, 8, 8, generator=g)
    y = torch.arange(150) % 3
    x = (templates[y] + 0.2 * torch.rand(150, 1, 8, 8, generator=g)).repeat(1, 3, 1, 1)  # (N, 3, 8, 8)
    y_semi = torch.where(torch.rand(150, generator=g) < 0.7, -1, y)
    images = (x if layout == "NCHW" else x.permute(0, 2, 3, 1)).numpy()
    clf = quick(model="cnn_small", options={"batch_size": 16}).fit(images, y_semi.numpy())
    assert clf.n_features_in_ == images.shape[1]  # scikit-learn counts axis 1 of any X
    assert clf.score(images, y.numpy()) > 0.9
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(images), clf.predict_proba(images))


def test_auto_scores_every_candidate_and_the_ensemble_on_folds_and_says_its_choice():
    """The default: candidates and the mean of AUTO_ENSEMBLE on folds of the labels, the ensemble kept
    unless a candidate beats it beyond noise; the choice in one line, the fitted members behind it."""
    from semireg.estimator import AUTO_CANDIDATES, AUTO_ENSEMBLE

    x, y, y_semi = blobs(seed=3)
    clf = SemiSupervisedClassifier(budget="40s", steps=40, random_state=0, options=QUICK["options"])
    clf.fit(StandardScaler().fit_transform(x), y_semi)
    ensemble = "+".join(AUTO_ENSEMBLE)
    assert set(clf.selection_["accuracy"]) == {*AUTO_CANDIDATES, ensemble}
    assert all(len(v) == 3 for v in clf.selection_["accuracy"].values())  # three folds each
    assert clf.choice_.startswith(f"auto: {clf.method_} (") and clf.choice_.endswith(" s")
    assert clf.method_ in {*AUTO_CANDIDATES, ensemble}
    assert [c["method"]["name"] for _, c in clf.members_] == clf.method_.split("+")
    probs = clf.predict_proba(StandardScaler().fit_transform(x))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)


def test_auto_keeps_the_ensemble_and_warns_when_its_budget_cannot_hold_the_search():
    """On a machine too slow (or busy) for the search within `budget`, the default still fits: the ensemble the
    search would have had to beat, said in `choice_` and in a warning, where `select` refuses with its reason."""
    from semireg.estimator import AUTO_ENSEMBLE

    x, y, y_semi = blobs(seed=3)
    x = StandardScaler().fit_transform(x)
    clf = SemiSupervisedClassifier(budget="1s", steps=40, random_state=0, options=QUICK["options"])
    with pytest.warns(UserWarning, match=r"no search: the budget leaves -?\d+ s after the probe"):
        clf.fit(x, y_semi)
    assert clf.method_ == "+".join(AUTO_ENSEMBLE) and clf.selection_["accuracy"] == {}
    assert clf.choice_.startswith(f"auto: {clf.method_} (no search: ")
    assert [c["method"]["name"] for _, c in clf.members_] == list(AUTO_ENSEMBLE)
    assert clf.score(x, y) > 0.9


def test_a_plus_joined_method_is_the_mean_of_its_members_probabilities_and_pickles():
    x, y, y_semi = blobs(seed=4)
    x = StandardScaler().fit_transform(x)
    both = quick(method="supervised+labelspreading").fit(x, y_semi)
    # the neural options (batch size, MLP) are the neural member's; a classical member fits without them
    alone = [quick(method="supervised").fit(x, y_semi), SemiSupervisedClassifier("labelspreading").fit(x, y_semi)]
    np.testing.assert_allclose(both.predict_proba(x), (alone[0].predict_proba(x) + alone[1].predict_proba(x)) / 2)
    again = pickle.loads(pickle.dumps(both))
    np.testing.assert_array_equal(again.predict_proba(x), both.predict_proba(x))
