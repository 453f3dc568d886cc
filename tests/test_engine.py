import copy
import json
import math

import pytest
import torch
from stepping import assert_steps_alike
from torch import nn

import semireg
from semireg.config import from_kwargs
from semireg.engine import train
from semireg.errors import ConfigError, DataError, DivergedError, RunDirError
from semireg.evaluation import evaluation_mode
from semireg.optim import EMA, build_optimizer, lr_factor
from semireg.traindata import TrainData


def blobs(n=200, d=10, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 3
    y = torch.arange(n) % k
    return centers[y] + torch.randn(n, d, generator=g), y


def small_data() -> TrainData:
    x, y = blobs()
    return TrainData(x_l=x[:30], y_l=y[:30], x_u=x[30:150], num_classes=3, eval_sets={"test": (x[150:], y[150:])})


def cfg_for(**kw):
    base = {
        "method": {"name": "vat"},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {
            "steps": 20,
            "batch_size": 10,
            "unlabeled_batch_size": 20,
            "progress": False,
            "deterministic": True,
            "log_every": 5,
        },
    }
    return from_kwargs(kw, base=base)


def test_run_directory_holds_everything(tmp_path):
    run = tmp_path / "run"
    res = train(cfg_for(eval_every=10), str(run), data=small_data())  # a str path, as a user's script passes
    assert res.run_dir == run
    for name in (
        "config.json",
        "meta.json",
        "metrics.jsonl",
        "checkpoint.pt",
        "results.json",
        "confusion.png",
        "curves.png",
    ):
        assert (run / name).exists(), name
    meta = json.loads((run / "meta.json").read_text())
    assert meta["seed"] == 0 and "semireg" in meta["code"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [10, 20]
    assert res.metrics["test"]["accuracy"] > 0.5


def test_existing_run_dir_is_refused_and_untouched(tmp_path):
    run = tmp_path / "run"
    train(cfg_for(), run, data=small_data())
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(RunDirError, match="--overwrite"):
        train(cfg_for(), run, data=small_data())
    assert (run / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_reaches_the_same_weights(tmp_path, ema):
    full = train(cfg_for(ema_decay=ema), tmp_path / "full", data=small_data())
    # An interrupted run: stop after 10 steps (the config says 10, its checkpoint says step 10) ...
    part = tmp_path / "part"
    train(cfg_for(ema_decay=ema, steps=10), part, data=small_data())
    # ... then continue with the full config from that checkpoint.
    cfg = cfg_for(ema_decay=ema)
    state = torch.load(part / "checkpoint.pt", weights_only=True)
    assert state["step"] == 10
    # The scheduler total differs between the two configs, but the default schedule is constant.
    resumed = train(cfg, part, data=small_data(), resume=True)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


class TurnsNaN(nn.Module):
    """A linear model whose training forwards give NaN from the `at`-th on (None: never)."""

    def __init__(self, at: int | None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net, self.at, self.calls = nn.Linear(10, 3), at, 0  # blobs: 10 features, 3 classes

    def forward(self, x):
        out = self.net(x.flatten(1))
        self.calls += self.training
        return out * float("nan") if self.training and self.at is not None and self.calls >= self.at else out


def test_nan_loss_stops_with_a_clear_message_and_keeps_last_checkpoint(tmp_path):
    data = small_data()
    run = tmp_path / "run"
    train(cfg_for(steps=10), run, data=data, model=TurnsNaN(None))
    good = (run / "checkpoint.pt").read_bytes()
    cfg = cfg_for(steps=40, checkpoint_every=5)
    with pytest.raises(DivergedError, match="non-finite"):
        train(cfg, run, data=data, resume=True, model=TurnsNaN(at=4))  # NaN within the first resumed steps
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert state["step"] >= 10
    # The loss turns NaN at step 11 or 12, before the next checkpoint (step 15): the last good
    # checkpoint is the one kept, byte for byte.
    assert (run / "checkpoint.pt").read_bytes() == good


def test_ema_gets_no_gradient_and_follows_the_model():
    model = nn.Linear(3, 2)
    ema = EMA(model, 0.5, warmup=False)
    loss = model(torch.randn(4, 3)).sum() + ema.module(torch.randn(4, 3)).sum()
    loss.backward()
    assert all(p.grad is None for p in ema.module.parameters())
    before = ema.module.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, 0.5 * before + 0.5 * model.weight)


def test_ema_copies_the_running_statistics_not_the_constant_buffers():
    """BatchNorm's running statistics are the model's (copied at each update); a non-persistent buffer
    (the MLP's noise bank: 160 MB on the VAT paper's MLP) is a constant the copy already holds."""
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model.register_buffer("constant", torch.zeros(5), persistent=False)
    ema = EMA(model, 0.5, warmup=False)
    model(torch.randn(8, 3))  # moves the running statistics
    with torch.no_grad():
        model.constant.fill_(1.0)
    ema.update(model)
    assert torch.equal(ema.module[1].running_mean, model[1].running_mean)
    assert int(ema.module[1].num_batches_tracked) == 1
    assert torch.equal(ema.module.constant, torch.zeros(5))


def drifting_weights(model: nn.Module, t: int) -> None:
    """Weights that move far from their start and keep moving: w_t = w_0 + t/100 + sin(t/30)."""
    with torch.no_grad():
        model.weight.fill_(t / 100 + math.sin(t / 30))


def test_ema_warm_up_evaluates_trained_weights_after_a_short_budget():
    model = nn.Linear(3, 2)
    warm, plain = EMA(model, 0.999), EMA(model, 0.999, warmup=False)
    for t in range(1, 101):
        drifting_weights(model, t)
        warm.update(model)
        plain.update(model)
    gap_warm = float((warm.module.weight - model.weight).abs().max())
    gap_plain = float((plain.module.weight - model.weight).abs().max())
    # Without the warm-up 0.999^100 = 90 % of the initial weights remain; with it what remains is
    # the lag of an average over the last ~12 steps (decay (1 + t)/(10 + t) at t = 99: 0.92) of
    # weights moving up to 0.04 a step: measured 0.22 against 1.13.
    assert gap_plain > 0.8 * float(model.weight.abs().max())
    assert gap_warm < 0.25 * gap_plain
    assert warm.current_decay() == pytest.approx(101 / 110)  # the 101st update's


def test_ema_warm_up_leaves_the_long_run_average_unchanged():
    model = nn.Linear(3, 2)
    warm, plain = EMA(model, 0.99), EMA(model, 0.99, warmup=False)
    for t in range(1, 3001):
        drifting_weights(model, t)
        warm.update(model)
        plain.update(model)
    assert warm.current_decay() == 0.99  # past t = 9/(1 - 0.99) - 1 = 899 the decay is the plain one
    # What the warm-up changed before t = 899 has decayed by 0.99^2100 ~ 1e-9 since.
    assert torch.allclose(warm.module.weight, plain.module.weight, rtol=0, atol=1e-5)
    assert float((warm.module.weight - model.weight).abs().max()) > 0.5  # an average, not a copy


def test_schedules():
    cfg = cfg_for(schedule="cosine", warmup_steps=10, steps=110)
    assert lr_factor(0, cfg, 110) == pytest.approx(0.1)
    assert lr_factor(10, cfg, 110) == pytest.approx(1.0)
    assert lr_factor(60, cfg, 110) == pytest.approx(0.5)
    cfg = cfg_for(schedule="step", steps=100)
    assert lr_factor(49, cfg, 100) == 1.0 and lr_factor(80, cfg, 100) == pytest.approx(0.01)


@pytest.mark.parametrize("opt", ["adam", "adamw", "sgd", "adadelta"])
def test_every_optimizer_trains(opt):
    res = train(cfg_for(optimizer=opt, lr=1.0 if opt == "adadelta" else 0.05, steps=40), data=small_data())
    assert res.metrics["test"]["accuracy"] > 0.6


@pytest.mark.parametrize("opt", ["adam", "adamw"])
def test_adam_runs_fused_on_cpu_and_moves_as_the_default_implementation(opt):
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    reference = copy.deepcopy(model)
    fused = build_optimizer(model.parameters(), cfg_for(optimizer=opt, lr=0.01, weight_decay=0.01))
    assert fused.defaults["fused"]
    plain = (torch.optim.Adam if opt == "adam" else torch.optim.AdamW)(
        reference.parameters(), lr=0.01, weight_decay=0.01
    )
    assert_steps_alike([(model, fused), (reference, plain)], torch.randn(16, 8), steps=5)
    # Tensors no fused kernel takes keep torch's default implementation.
    elsewhere = build_optimizer([torch.zeros(2, device="meta")], cfg_for(optimizer=opt))
    assert not elsewhere.defaults["fused"]


def test_semi_supervised_method_needs_unlabelled_images():
    data = small_data()
    data.x_u = None
    with pytest.raises(ConfigError, match="unlabelled"):
        train(cfg_for(), data=data)


def test_wrong_image_shape_is_one_clear_error():
    data = small_data()
    model = nn.Sequential(nn.Flatten(), nn.Linear(99, 3))
    with pytest.raises(ConfigError, match="does not take inputs of shape"):
        train(cfg_for(), model=model, data=data)


def test_api_fit_and_evaluate_with_numpy_and_user_module():
    x, y = blobs(300, 10, 3)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    res = semireg.fit(
        model,
        (x[:30].numpy(), y[:30].numpy()),
        unlabeled=x[30:200].numpy(),
        method="vat",
        steps=60,
        seed=1,
        eps=1.0,
        lr=1e-2,
        batch_size=30,
        unlabeled_batch_size=64,
    )
    assert res.model is model and res.metrics["steps"] == 60
    metrics = semireg.evaluate(res.model, (x[200:], y[200:]))
    assert metrics["accuracy"] > 0.8 and 0 <= metrics["macro_f1"] <= 1
    res = semireg.fit(nn.Linear(10, 3), (x[:30], y[:30]), steps=5)  # supervised: no unlabelled
    assert res.metrics["steps"] == 5


def test_labels_outside_the_classes_are_refused():
    x, y = blobs(30, 10, 3)
    with pytest.raises(DataError, match=r"\[0, 3\)"):
        semireg.fit(nn.Linear(10, 3), (x, y + 5), steps=1, num_classes=3)


def test_bf16_mixed_precision_trains_vat():
    res = train(cfg_for(precision="bf16-mixed", steps=40, lr=0.05), data=small_data())
    assert res.metrics["test"]["accuracy"] > 0.6


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_final_metrics_are_those_of_the_returned_weights(tmp_path, ema_decay):
    """The final metrics reuse the last step's evaluation when the weights are unchanged since; they
    must still equal a fresh evaluation of the returned model. (That restored best weights are evaluated
    again is test_consistency's test_early_stopping_restores_the_best_weights.)"""
    from semireg.engine import metrics_on

    data = small_data()
    x_test, y_test = data.eval_sets["test"]
    res = train(cfg_for(eval_every=10, ema_decay=ema_decay), tmp_path / "run", data=data)
    fresh = metrics_on(res.model.eval(), x_test, y_test, data.num_classes)
    assert res.metrics["test"]["accuracy"] == fresh["accuracy"]
    assert res.metrics["test"]["loss"] == pytest.approx(fresh["loss"], rel=1e-6)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if r.get("kind") == "eval" and r.get("split") == "test"][-1]
    assert last["step"] == 20 and last["accuracy"] == res.metrics["test"]["accuracy"]


@pytest.mark.parametrize("start_training", [True, False])
def test_evaluation_mode_switches_dropout_off_and_restores_the_flag_even_on_error(start_training):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
    model.train(start_training)
    x = torch.ones(64, 4)
    with evaluation_mode(model):
        assert not any(m.training for m in model.modules())
        assert torch.equal(model(x), model(x))  # dropout off: the same output twice
    assert all(m.training == start_training for m in model.modules())
    with pytest.raises(RuntimeError), evaluation_mode(model):
        raise RuntimeError("inside")
    assert all(m.training == start_training for m in model.modules())


def test_uint8_images_train_to_the_same_weights_as_their_floats():
    """Images are held as uint8 (a quarter of float32's bytes) and made floats per batch: the same
    arithmetic as floats made up front, so the weights are bit-identical."""
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (60, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.arange(60) % 3
    held = TrainData(
        x_l=pixels[:12], y_l=y[:12], x_u=pixels[12:48], num_classes=3, eval_sets={"test": (pixels[48:], y[48:])}
    )
    assert held.x_l.dtype == torch.uint8 and held.as_float().x_l.dtype == torch.float32
    assert torch.equal(held.as_float().x_l, pixels[:12].float() / 255)
    cfg = lambda: from_kwargs(
        {"method.name": "fixmatch", "model.name": "cnn_small", "model.hidden": [4], "steps": 6, "batch_size": 4},
        base={"train": {"progress": False, "precision": "32-true", "deterministic": True}, "augment": {"pad": 1}},
    )
    a = train(cfg(), data=held)
    b = train(cfg(), data=held.as_float())
    for (key, wa), wb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(wa, wb), key
    assert a.metrics["test"] == b.metrics["test"]
