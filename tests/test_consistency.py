"""Teacher -> noisy student, SWA, validation-driven LR reduction and early stopping."""

import json

import pytest
import torch

import semireg
from semireg.augment import AugmentConfig, Augmenter
from semireg.config import from_kwargs
from semireg.engine import train
from semireg.errors import ConfigError
from semireg.methods import Batch, get_method
from semireg.methods.consistency import ConsistencyOptions, consistency_loss
from semireg.models import build_model
from semireg.optim import Plateau
from semireg.traindata import TrainData


def image_data(n=96, seed=0, n_val=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    # Class = which third of the image is bright; learnable by a tiny CNN in a few steps.
    x = 0.2 * torch.rand(n, 3, 32, 32, generator=g)
    for k in range(3):
        x[y == k, :, :, k * 10 : k * 10 + 10] += 0.7
    x = x.clamp(0, 1)
    evals = {"test": (x[-24:], y[-24:])}
    if n_val:
        evals["val"] = (x[-24 - n_val : -24], y[-24 - n_val : -24])
    return TrainData(x_l=x[: n - 24 - n_val], y_l=y[: n - 24 - n_val], x_u=None, num_classes=3, eval_sets=evals)


def cfg(**kw):
    base = {
        "model": {"name": "cnn_small", "hidden": [8, 16]},
        "train": {"steps": 12, "batch_size": 16, "progress": False, "log_every": 4, "deterministic": True},
        "augment": {"flip": True, "pad": 2},
    }
    return from_kwargs(kw, base=base)


def tiny_pair():
    torch.manual_seed(0)
    teacher = build_model("cnn_small", (3, 32, 32), 3, hidden=[8, 16]).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = build_model("cnn_small", (3, 32, 32), 3, hidden=[8, 16])
    return teacher, student


def test_student_loss_trains_every_student_parameter_and_never_the_teacher():
    teacher, student = tiny_pair()
    for p in teacher.parameters():
        p.requires_grad_(True)  # even a teacher left trainable must receive nothing
    data = image_data()
    aug = Augmenter(AugmentConfig(flip=True, pad=2), seed=0)
    batch = Batch(x_l=data.x_l[:16], y_l=data.y_l[:16], strong=aug.strong, teacher=teacher)
    opts = ConsistencyOptions(ce_weight=0.0, kl_weight=1.0)  # the consistency term alone
    terms = get_method("consistency").step(student, batch, opts)
    terms["loss"].backward()
    assert terms["kl"] > 0
    assert all(p.grad is None for p in teacher.parameters())
    missing = [n for n, p in student.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_the_noisy_view_is_what_makes_the_term_nonzero():
    # The same network on the same (weak) view as its own teacher: KL exactly 0, no gradient.
    # On the strong view the term is positive. A loss comparing a tensor with itself would be 0 in both.
    teacher, student = tiny_pair()
    student.load_state_dict(teacher.state_dict())
    student.eval()  # same BatchNorm mode as the teacher
    data = image_data()
    aug = Augmenter(AugmentConfig(ra_magnitude=9), seed=0)
    batch = Batch(x_l=data.x_l[:16], y_l=data.y_l[:16], strong=aug.strong, teacher=teacher)
    weak = get_method("consistency").step(student, batch, ConsistencyOptions(student_view="weak", temperature=1.0))
    strong = get_method("consistency").step(student, batch, ConsistencyOptions(student_view="strong", temperature=1.0))
    assert weak["kl"].abs() < 1e-6 and strong["kl"] > 1e-6


def test_temperature_and_t2_scaling():
    s, t = torch.randn(8, 5), torch.randn(8, 5)
    plain = consistency_loss(s, t, temperature=10.0, t2_scaling=False)
    scaled = consistency_loss(s, t, temperature=10.0, t2_scaling=True)
    assert torch.allclose(scaled, plain * 100)
    # Higher temperature, softer distributions, smaller divergence.
    assert consistency_loss(s, t, temperature=1.0, t2_scaling=False) > plain


def test_staged_teacher_then_student_run(tmp_path):
    data = image_data()
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    train(cfg(), teacher_dir, data=data)
    before = (teacher_dir / "checkpoint.pt").read_bytes()
    res = train(cfg(method={"name": "consistency"}, teacher=str(teacher_dir)), student_dir, data=data)
    assert (teacher_dir / "checkpoint.pt").read_bytes() == before  # the student never writes its teacher
    meta = json.loads((student_dir / "meta.json").read_text())
    assert meta["teacher"] == str(teacher_dir)
    logged = [json.loads(line) for line in (student_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("kl" in r and r["kl"] > 0 for r in logged)
    # The reported figure is the returned student's, evaluated on the test set (not the teacher's).
    assert res.metrics["test"]["accuracy"] == pytest.approx(
        semireg.evaluate(res.model, data.eval_sets["test"])["accuracy"]
    )


def test_consistency_without_a_teacher_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="teacher"):
        train(cfg(method={"name": "consistency"}), tmp_path / "s", data=image_data())
    with pytest.raises(ConfigError, match="train the teacher first"):
        train(cfg(method={"name": "consistency"}, teacher=str(tmp_path / "none")), tmp_path / "s2", data=image_data())


def test_swa_averages_the_snapshots_and_recomputes_batchnorm():
    data = image_data()
    common = dict(optimizer="sgd", lr=0.05, momentum=0.0)
    res = train(cfg(steps=8, swa=True, swa_start=0.5, swa_every=1, **common), data=data)
    # Deterministic runs stopped at steps 5..8 give the snapshots SWA averaged.
    snaps = [train(cfg(steps=k, **common), data=data).model.state_dict() for k in range(5, 9)]
    swa_state = res.model.state_dict()
    for name, value in swa_state.items():
        if "running" in name or "num_batches" in name:
            continue
        mean = torch.stack([s[name].float() for s in snaps]).mean(0)
        assert torch.allclose(value, mean, atol=1e-5), name
    # BatchNorm statistics recomputed for the averaged weights: the first BN's running mean is the
    # mean over the training images of the first conv's output under the averaged weights.
    conv, bn = res.model[0], res.model[1]
    with torch.no_grad():
        feats = conv(data.x_l)
    assert torch.allclose(bn.running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-4)
    assert res.metrics["evaluated_weights"] == "swa"


def test_plateau_reduces_the_lr_and_stops():
    p = Plateau("min", patience_lr=2, factor=0.5, patience_stop=4)
    assert p.update(1.0, 1) == (True, False)
    assert p.update(1.0, 2) == (False, False) and p.scale == 1.0
    assert p.update(1.1, 3) == (False, False) and p.scale == 0.5
    assert p.update(1.2, 4) == (False, False)
    assert p.update(1.3, 5) == (False, True) and p.scale == 0.25
    q = Plateau("max", patience_lr=1, factor=0.1, patience_stop=0)
    q.update(0.5, 1)
    assert q.update(0.6, 2) == (True, False) and q.update(0.6, 3) == (False, False) and q.scale == pytest.approx(0.1)


def test_early_stopping_restores_the_best_weights(tmp_path):
    data = image_data(n=120, n_val=24)
    run = tmp_path / "run"
    res = train(
        cfg(steps=200, eval_every=2, lr=0.05, early_stop_patience=2, plateau_patience=1, plateau_factor=0.5, n_val=24),
        run,
        data=data,
    )
    stopped = res.metrics["stopped_at"]
    assert stopped is not None and stopped < 200
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in evals if r["kind"] == "eval" and r["split"] == "val"]
    best = min(val, key=lambda r: r["loss"])
    assert "@best" in res.metrics["evaluated_weights"]
    assert res.metrics["val"]["loss"] == pytest.approx(best["loss"], rel=1e-5)
    lrs = [r["lr"] for r in evals if r["kind"] == "train"]
    assert min(lrs) < max(lrs)  # the plateau halved the learning rate at least once


def test_early_stopping_needs_a_validation_split():
    with pytest.raises(ConfigError, match="validation"):
        cfg(early_stop_patience=3, eval_every=5)


def test_init_from_starts_the_student_at_the_teachers_weights(tmp_path):
    data = image_data()
    train(cfg(), tmp_path / "teacher", data=data)
    res = train(
        cfg(
            steps=1,
            lr=1e-12,
            optimizer="sgd",
            momentum=0.0,
            method={"name": "consistency"},
            teacher=str(tmp_path / "teacher"),
            init_from=str(tmp_path / "teacher"),
        ),
        tmp_path / "student",
        data=data,
    )
    from semireg import rundir
    from semireg.finished import evaluated_weights

    teacher_w, _ = evaluated_weights(rundir.load_checkpoint(tmp_path / "teacher" / "checkpoint.pt"))
    for name, value in res.model.state_dict().items():
        if "running" not in name and "num_batches" not in name:
            assert torch.allclose(value, teacher_w[name], atol=1e-6), name
    with pytest.raises(ConfigError, match="init_from"):
        train(cfg(init_from=str(tmp_path / "nothing")), tmp_path / "x", data=data)
    assert not (tmp_path / "x").exists()  # refused before the run directory is made


def test_bn_recompute_gives_the_clean_training_images_statistics():
    """A model trained on augmented batches keeps their running statistics; `train.bn_recompute` replaces
    them, after training, by those of the labelled training images under the evaluation view, and the
    final metrics are of those statistics."""
    data = image_data()
    kept = train(cfg(steps=8), data=data)
    recomputed = train(cfg(steps=8, bn_recompute=True), data=data)
    conv, bn = recomputed.model[0], recomputed.model[1]
    with torch.no_grad():
        feats = conv(data.x_l)  # (N, C, H, W): the weights are the same in both runs (deterministic)
    assert torch.equal(conv.weight, kept.model[0].weight)
    assert torch.allclose(bn.running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-4)
    assert not torch.allclose(kept.model[1].running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-4)
    assert recomputed.metrics["evaluated_weights"] == "model+bn"
    x_test, y_test = data.eval_sets["test"]
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(recomputed.model.eval()(x_test), y_test)
    assert recomputed.metrics["test"]["loss"] == pytest.approx(float(loss), rel=1e-5)


def test_bn_recompute_on_all_takes_the_unlabelled_images_too():
    """`train.bn_recompute_on = "all"`: the statistics of the labelled and the unlabelled training images
    together (the VAT authors' re-estimation), not of the labelled ones alone; an unknown value is refused."""
    import dataclasses

    data = image_data()
    x_u = torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(5))  # brighter, unlike x_l
    data = dataclasses.replace(data, x_u=x_u)
    res = train(cfg(steps=4, bn_recompute=True, bn_recompute_on="all", method={"name": "fixmatch"}), data=data)
    conv, bn = res.model[0], res.model[1]
    with torch.no_grad():
        every = conv(torch.cat([data.x_l, x_u])).mean(dim=(0, 2, 3))
        labelled = conv(data.x_l).mean(dim=(0, 2, 3))
    assert torch.allclose(bn.running_mean, every, atol=1e-4)
    assert not torch.allclose(bn.running_mean, labelled, atol=1e-3)
    with pytest.raises(ConfigError, match="bn_recompute_on"):
        cfg(bn_recompute_on="unlabeled")
