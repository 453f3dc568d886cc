"""The measures that judge a generator's samples: class coverage, largest share, KL to uniform and the
Fréchet distance in a judge classifier's feature space."""

import math

import pytest
import torch
from sklearn.datasets import load_digits

from semireg.systems.evaluation import class_diversity, frechet_distance, judge_features, train_judge


@pytest.fixture(scope="module")
def digits_judge():
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1200], perm[1200:]
    judge = train_judge(x[train], y[train], 10, epochs=15)
    return judge, x[train], x[test], y[test]


def test_real_held_out_images_cover_every_class_and_one_class_covers_one(digits_judge):
    judge, _, x_test, y_test = digits_judge
    real = class_diversity(judge(x_test).argmax(1), 10)
    assert real["classes_covered"] == 10
    assert real["max_class_share"] < 0.15 and real["kl_uniform"] < 0.05
    ones = x_test[y_test == 1]
    single = class_diversity(judge(ones).argmax(1), 10)
    assert single["classes_covered"] == 1
    assert single["max_class_share"] > 0.9 and single["kl_uniform"] > 0.8 * math.log(10)


def test_class_diversity_counts():
    out = class_diversity(torch.tensor([0] * 98 + [1, 2]), 10)  # two classes with 1 % each: not covered
    assert out["classes_covered"] == 1 and out["max_class_share"] == pytest.approx(0.98)
    assert out["class_histogram"] == [98, 1, 1] + [0] * 7
    even = class_diversity(torch.arange(1000) % 10, 10)
    assert even["classes_covered"] == 10 and even["kl_uniform"] == pytest.approx(0.0, abs=1e-12)
    assert class_diversity(torch.zeros(50, dtype=torch.long), 10)["kl_uniform"] == pytest.approx(math.log(10))


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    g = torch.Generator().manual_seed(0)
    n, d = 200_000, 3
    std_a, std_b = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([2.0, 1.0, 0.5])
    mu_b = torch.tensor([1.0, 0.0, -1.0])
    a = torch.randn(n, d, generator=g, dtype=torch.float64) * std_a
    b = torch.randn(n, d, generator=g, dtype=torch.float64) * std_b + mu_b
    # Diagonal covariances commute: FD = |mu|^2 + sum (sigma_a - sigma_b)^2
    expected = float(mu_b.pow(2).sum() + (std_a - std_b).pow(2).sum())
    assert frechet_distance(a, b) == pytest.approx(expected, abs=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # A full (non-diagonal) covariance: symmetric in its arguments, invariant to a rotation of both
    rot = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    assert frechet_distance(a @ rot, b @ rot) == pytest.approx(frechet_distance(a, b), rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-6)


def test_judge_features_separate_real_from_one_class(digits_judge):
    judge, x_train, x_test, y_test = digits_judge
    real = frechet_distance(judge_features(judge, x_train), judge_features(judge, x_test))
    ones = frechet_distance(judge_features(judge, x_test[y_test == 1]), judge_features(judge, x_test))
    noise = frechet_distance(judge_features(judge, torch.rand(500, 1, 8, 8)), judge_features(judge, x_test))
    assert real < ones / 5 and real < noise / 5
