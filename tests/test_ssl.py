"""The pieces of the semi-supervised methods, checked against hand-computed values, and the engine's
support for them (method state in checkpoints, EMA teachers, mu)."""

import json

import pytest
import torch

from semireg.config import from_kwargs, load_recipe
from semireg.engine import train, unlabeled_batch_size
from semireg.errors import ConfigError
from semireg.methods import METHODS, get_method
from semireg.methods.common import DistAlign, ramp_up, sharpen
from semireg.methods.flexmatch import LearningStatus, class_thresholds
from semireg.methods.freematch import SelfAdaptiveThreshold, fairness_loss
from semireg.methods.uda import tsa_threshold
from semireg.traindata import TrainData


def test_ramp_up_and_sharpen():
    assert [ramp_up(p, 0.4) for p in (0.0, 0.2, 0.4, 0.9)] == [0.0, 0.5, 1.0, 1.0]
    assert ramp_up(0.0, 0.0) == 1.0
    p = torch.tensor([[0.6, 0.4]])
    expected = torch.tensor([[0.36, 0.16]]) / 0.52  # T = 0.5 squares, then renormalises
    assert torch.allclose(sharpen(p, 0.5), expected)


def test_distribution_alignment_moves_predictions_towards_the_uniform_prior():
    da = DistAlign(2, momentum=0.0)  # p_model becomes the batch mean at once
    probs = torch.tensor([[0.9, 0.1], [0.7, 0.3]])  # the model favours class 0 (mean 0.8, 0.2)
    aligned = da(probs)
    assert torch.allclose(da.p_model, torch.tensor([0.8, 0.2]))
    assert torch.allclose(aligned.sum(1), torch.ones(2))
    ratio = torch.tensor([0.5 / 0.8, 0.5 / 0.2])
    assert torch.allclose(aligned[0], probs[0] * ratio / (probs[0] * ratio).sum())
    assert (aligned[:, 1] > probs[:, 1]).all()  # the under-predicted class gains


def test_flexmatch_learning_status_and_thresholds():
    status = LearningStatus(num_classes=3, num_unlabeled=6)
    # Nothing confident yet: status stays 0, so every class's threshold is 0 (warm-up).
    assert torch.equal(status.refresh(threshold_warmup=True), torch.zeros(3))
    status.remember(torch.tensor([0, 1, 2, 3]), torch.tensor([0.99, 0.99, 0.5, 0.99]), torch.tensor([0, 0, 1, 2]), 0.95)
    assert status.selected.tolist() == [0, 0, -1, 2, -1, -1]  # image 2 was not confident enough
    # counts: unused 3, class0 2, class1 0, class2 1. With warm-up the maximum includes the unused 3.
    assert torch.allclose(status.refresh(threshold_warmup=True), torch.tensor([2 / 3, 0.0, 1 / 3]))
    assert torch.allclose(status.refresh(threshold_warmup=False), torch.tensor([1.0, 0.0, 0.5]))
    sigma = torch.tensor([1.0, 0.0, 0.5])
    assert torch.allclose(class_thresholds(sigma, 0.95, "convex"), torch.tensor([0.95, 0.0, 0.95 * 0.5 / 1.5]))
    assert torch.allclose(class_thresholds(sigma, 0.95, "linear"), 0.95 * sigma)
    with pytest.raises(ConfigError, match="mapping"):
        class_thresholds(sigma, 0.95, "cubic")


def test_freematch_self_adaptive_threshold():
    sat = SelfAdaptiveThreshold(num_classes=2, momentum=0.5)
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6]])
    mask = sat.update(probs)
    # tau = 0.5 * 0.5 + 0.5 * mean(0.9, 0.8, 0.6); p_model = 0.5 * 0.5 + 0.5 * mean probs
    tau = 0.5 * 0.5 + 0.5 * (0.9 + 0.8 + 0.6) / 3
    p_model = 0.25 + 0.5 * torch.tensor([0.7, 0.3])
    assert sat.tau.item() == pytest.approx(tau)
    assert torch.allclose(sat.p_model, p_model)
    assert torch.allclose(sat.label_hist, 0.25 + 0.5 * torch.tensor([2 / 3, 1 / 3]))
    local = p_model / p_model.max()
    expected = [0.9 >= tau * local[0], 0.8 >= tau * local[0], 0.6 >= tau * local[1]]
    assert mask.tolist() == [float(e) for e in expected]


def test_freematch_fairness_term_is_zero_without_confident_images_and_finite_always():
    logits = torch.randn(5, 3, requires_grad=True)
    p, h = torch.full((3,), 1 / 3), torch.full((3,), 1 / 3)
    zero = fairness_loss(logits, torch.zeros(5), p, h)
    assert zero.item() == 0.0
    zero.backward()
    assert torch.isfinite(logits.grad).all()
    logits.grad = None
    term = fairness_loss(logits, torch.ones(5), p, h)
    term.backward()
    assert torch.isfinite(term) and logits.grad.abs().sum() > 0


def test_tsa_thresholds():
    assert tsa_threshold("none", 0.3, 10) == 1.0
    assert tsa_threshold("linear", 0.0, 10) == pytest.approx(0.1)
    assert tsa_threshold("linear", 1.0, 10) == pytest.approx(1.0)
    # exp releases labels late, log early (Xie et al., figure 5)
    assert tsa_threshold("exp", 0.5, 10) < tsa_threshold("linear", 0.5, 10) < tsa_threshold("log", 0.5, 10)
    with pytest.raises(ConfigError, match="tsa"):
        tsa_threshold("cosine", 0.5, 10)


# ----------------------------------------------------------------------------- engine support


def image_blobs(n=240, k=3, seed=0):
    """Tiny 1x8x8 images: a class template plus noise."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(k, 1, 8, 8, generator=g)
    y = torch.arange(n) % k
    return (templates[y] + 0.3 * torch.rand(n, 1, 8, 8, generator=g)).clamp(0, 1), y


def image_data() -> TrainData:
    x, y = image_blobs()
    return TrainData(x_l=x[:12], y_l=y[:12], x_u=x[12:180], num_classes=3, eval_sets={"test": (x[180:], y[180:])})


def ssl_cfg(method: str, **kw):
    base = {
        "method": {"name": method},
        "model": {"name": "cnn_small", "hidden": [8]},
        "train": {
            "steps": 12,
            "batch_size": 6,
            "progress": False,
            "deterministic": True,
            "log_every": 3,
            "ema_decay": 0.9,
            "lr": 1e-2,
        },
        "augment": {"pad": 1, "ra_ops": 1},
    }
    return from_kwargs(kw, base=base)


def test_unlabelled_batch_is_mu_times_the_labelled_batch():
    cfg = ssl_cfg("fixmatch")
    assert unlabeled_batch_size(cfg, get_method("fixmatch").mu) == 7 * 6  # the paper's mu
    assert unlabeled_batch_size(ssl_cfg("fixmatch", mu=2), 7) == 12
    assert unlabeled_batch_size(ssl_cfg("fixmatch", unlabeled_batch_size=5), 7) == 5
    assert unlabeled_batch_size(ssl_cfg("meanteacher"), get_method("meanteacher").mu) == 6


def test_mean_teacher_without_an_ema_gets_one_as_its_default(capsys):
    cfg = ssl_cfg("meanteacher", ema_decay=0.0)
    assert cfg.train.ema_decay == 0.999
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.ema_decay = 0.999" in err, err
    assert ssl_cfg("meanteacher", ema_decay=0.9).train.ema_decay == 0.9  # a setting of the user's own is kept
    assert ssl_cfg("fixmatch", ema_decay=0.0).train.ema_decay == 0.0  # only a method that needs it gets it


@pytest.mark.parametrize("method", ["flexmatch", "freematch"])
def test_resume_restores_the_method_state(tmp_path, method):
    full = train(ssl_cfg(method), tmp_path / "full", data=image_data())
    train(ssl_cfg(method, steps=6), tmp_path / "part", data=image_data())
    resumed = train(ssl_cfg(method), tmp_path / "part", data=image_data(), resume=True)
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    state_full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["method_state"]
    state_resumed = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)["method_state"]
    assert state_full.keys() == state_resumed.keys() and len(state_full) > 0
    for key in state_full:
        assert torch.equal(state_full[key], state_resumed[key]), key
    meta = json.loads((tmp_path / "full" / "meta.json").read_text())
    assert meta["unlabeled_batch_size"] == 42


def test_flexmatch_remembers_confident_images_during_a_run(tmp_path):
    train(ssl_cfg("flexmatch", steps=30, threshold=0.6), tmp_path / "run", data=image_data())
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["method_state"]
    assert (state["status.selected"] >= 0).any()  # the separable toy data gets confident quickly


# ----------------------------------------------------------------------------- recipes


def test_method_recipes_extend_the_shared_protocol():
    base = load_recipe("mnist-100-ssl")
    for name in ("fixmatch", "flexmatch", "freematch", "uda", "pseudolabel", "pimodel", "meanteacher"):
        recipe = load_recipe(f"mnist-100-{name}")
        assert recipe.base["method"] == {"name": name}  # the base's [method] replaced, not merged
        for section in ("data", "model", "train", "augment"):
            assert recipe.base[section] == base.base[section], (name, section)


def test_every_method_has_a_cifar10_cpu_recipe_on_the_shared_protocol():
    """cifar10-4000-cpu compares every method at one budget: a method registered later gets a
    recipe there or this fails. Only [method] differs from the protocol."""
    base = load_recipe("cifar10-4000-cpu")
    for name, spec in METHODS.items():
        if spec.needs_teacher:
            continue  # distillation from a trained teacher is not a semi-supervised method to compare here
        recipe = load_recipe(f"cifar10-4000-cpu-{name}")
        assert recipe.base["method"]["name"] == name
        for section in ("data", "model", "train", "augment"):
            assert recipe.base[section] == base.base[section], (name, section)
    assert base.base["data"]["n_labeled"] == 4000 and base.base["data"]["balanced"]


def test_extends_cycles_and_missing_parents_are_errors(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "b"\n[train]\nsteps = 3\n')
    (tmp_path / "b.toml").write_text('extends = "a"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load_recipe(str(tmp_path / "a.toml"))
    (tmp_path / "c.toml").write_text('extends = "no-such-recipe"\n')
    with pytest.raises(ConfigError, match="unknown recipe"):
        load_recipe(str(tmp_path / "c.toml"))
    (tmp_path / "d.toml").write_text('extends = "mnist-100-ssl"\n[train]\nsteps = 3\n')
    recipe = load_recipe(str(tmp_path / "d.toml"))
    assert recipe.base["train"]["steps"] == 3 and recipe.base["train"]["batch_size"] == 32
