"""Invariants every registered method must satisfy. The tests iterate the method registry, so a
newly registered method is covered without writing a test for it."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from semireg.methods import METHODS, Batch, get_method

K = 4  # classes of the toy problem


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, K)
    )


def test_options(name: str, **changes):
    """The method's defaults, with every confidence threshold at 0 so that the unsupervised term is
    active on an untrained model (a 0.95 threshold would mask everything and prove nothing)."""
    opts = get_method(name).options()
    if hasattr(opts, "threshold"):
        changes.setdefault("threshold", 0.0)
    return dataclasses.replace(opts, **changes)


test_options.__test__ = False  # a helper, not a test


def noisy(scale: float):
    # Stand-ins for the augmentations; they detach their input, as a real augmentation's output
    # carries no gradient to the image it came from.
    return lambda x, predicted=None: x.detach() + scale * torch.randn_like(x)


def make_batch(spec, opts, model, *, x_u_requires_grad=False, progress=1.0) -> tuple[Batch, nn.Module | None]:
    g = torch.Generator().manual_seed(1)
    x_l, y_l = torch.randn(8, 1, 8, 8, generator=g), torch.arange(8) % K
    x_raw = torch.randn(16, 1, 8, 8, generator=g)
    x_u = noisy(0.1)(x_raw).requires_grad_(x_u_requires_grad)
    # The EMA copy / teacher *could* receive gradients (requires_grad on), so a leak would show.
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    other.requires_grad_(True)
    state = spec.make_state(opts, K, 16) if spec.make_state is not None else None
    batch = Batch(
        x_l=x_l,
        y_l=y_l,
        x_u=x_u,
        strong=noisy(0.5),
        weak=noisy(0.1),
        x_u_raw=x_raw,
        idx_u=torch.arange(16),
        state=state,
        progress=progress,
        teacher=other.eval() if spec.needs_teacher else None,
        ema=other.eval() if spec.needs_ema else None,
    )
    return batch, other


REGULARISED = sorted(name for name, spec in METHODS.items() if spec.unsup_term is not None)


def _options_using_unlabelled(name):
    spec = get_method(name)
    changes = (
        {"on": "both"} if "on" in {f.name for f in dataclasses.fields(spec.options)} and name == "consistency" else {}
    )
    return test_options(name, **changes)


@pytest.mark.parametrize("name", REGULARISED)
def test_unsupervised_term_alone_trains_every_student_parameter_and_never_the_teacher(name):
    spec = get_method(name)
    opts = _options_using_unlabelled(name)
    model = tiny_model().train()
    batch, other = make_batch(spec, opts, model)
    torch.manual_seed(2)
    terms = spec.step(model, batch, opts)
    term = terms[spec.unsup_term]
    assert term.requires_grad, f"{name}: '{spec.unsup_term}' was returned detached"
    term.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient for student {pname}"
    for pname, p in other.named_parameters():
        assert p.grad is None or p.grad.abs().sum() == 0, f"{name}: the teacher/EMA copy got a gradient ({pname})"


def target_variants() -> list[tuple[str, dict]]:
    """Each method that declares `x_u_is_target`, at its defaults and, where it has them, with soft
    targets: under hard labels a target reaches the loss only through an argmax and a `>=` mask, so
    a graph left on it never shows as a gradient; with soft targets it does."""
    variants = []
    for name, spec in sorted(METHODS.items()):
        if not spec.x_u_is_target:
            continue
        variants.append((name, {}))
        if "hard_labels" in {f.name for f in dataclasses.fields(spec.options)}:
            variants.append((name, {"hard_labels": False}))
    return variants


def record_forwards(*models: nn.Module) -> list[torch.Tensor]:
    """Every output of the models' forwards that carries a graph, kept so its gradient can be read."""
    outputs: list[torch.Tensor] = []

    def keep(module, inputs, output):
        if output.requires_grad:
            output.retain_grad()
            outputs.append(output)

    for m in models:
        m.register_forward_hook(keep)
    return outputs


@pytest.mark.parametrize(
    "name,changes",
    target_variants(),
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={w}" for k, w in v.items()) or "defaults",
)
def test_the_weak_view_only_supplies_targets(name, changes):
    """No gradient flows back through the target branch (the predictions a method learns from), and
    no forward builds a graph the loss does not use (a target predicted with a graph keeps every
    activation of that forward alive, whether or not an argmax later cuts it)."""
    spec = get_method(name)
    opts = test_options(name, **changes)
    model = tiny_model().train()
    batch, other = make_batch(spec, opts, model, x_u_requires_grad=True)
    outputs = record_forwards(model, other)
    terms = spec.step(model, batch, opts)
    terms[spec.unsup_term].backward(retain_graph=True)
    assert batch.x_u.grad is None or batch.x_u.grad.abs().sum() == 0, f"{name}: a gradient reached the target view"
    terms["loss"].backward()
    unused = [tuple(o.shape) for o in outputs if o.grad is None]
    assert not unused, f"{name}: forwards with a graph that the loss never uses (targets not detached?): {unused}"


def step_with(name: str, **changes) -> dict[str, torch.Tensor]:
    """One step of `name` with its test options changed by `changes`, on the same model, batch and seed."""
    spec = get_method(name)
    opts = test_options(name, **changes)
    model = tiny_model().train()
    batch, _ = make_batch(spec, opts, model)
    torch.manual_seed(2)
    return spec.step(model, batch, opts)


def with_option(option: str) -> list[str]:
    return sorted(n for n, s in METHODS.items() if option in {f.name for f in dataclasses.fields(s.options)})


@pytest.mark.parametrize("name", [n for n in with_option("weight") if METHODS[n].unsup_term])
def test_the_weighted_term_is_part_of_the_loss(name):
    """loss(weight=w) - loss(weight=0) == w * term: the term is not computed and then dropped."""
    off, on = step_with(name, weight=0.0), step_with(name, weight=3.0)
    term = float(on[get_method(name).unsup_term].detach())
    assert abs(term) > 0
    assert float(on["loss"].detach()) - float(off["loss"].detach()) == pytest.approx(3.0 * term, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name", with_option("balance"))
def test_the_balance_term_is_part_of_the_loss(name):
    """loss(balance=b) - loss(balance=0) == b * KL(mean prediction || uniform), the term logged as
    `balance` (only when on), positive for an untrained model's uneven predictions."""
    off, on = step_with(name, balance=0.0), step_with(name, balance=2.0)
    assert "balance" not in off and float(on["balance"]) > 0
    assert float(on["loss"].detach()) - float(off["loss"].detach()) == pytest.approx(
        2.0 * float(on["balance"]), rel=1e-4, abs=1e-6
    )


@pytest.mark.parametrize(
    "name",
    sorted(
        n for n, s in METHODS.items() if s.unsup_term and "warmup" in {f.name for f in dataclasses.fields(s.options)}
    ),
)
def test_the_ramp_up_starts_at_zero(name):
    spec = get_method(name)
    opts = test_options(name, warmup=0.5)
    model = tiny_model().train()
    batch, _ = make_batch(spec, opts, model, progress=0.0)
    torch.manual_seed(2)
    terms = spec.step(model, batch, opts)
    assert float(terms["loss"].detach()) == pytest.approx(
        float(terms["ce"]) + float(terms.get("entropy", 0.0)) * getattr(opts, "entmin", 0.0), rel=1e-5
    )


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_step_returns_a_finite_loss_and_detached_logs(name):
    spec = get_method(name)
    opts = test_options(name)
    model = tiny_model().train()
    batch, _ = make_batch(spec, opts, model)
    terms = spec.step(model, batch, opts)
    assert terms["loss"].requires_grad and torch.isfinite(terms["loss"])
    for key, value in terms.items():
        assert value.ndim == 0, key
        if key not in ("loss", spec.unsup_term):
            assert not value.requires_grad, f"{name}: logged term '{key}' keeps a graph"


def test_the_pimodel_agreement_weight_follows_the_input_kind():
    """weight left unset: the vector weight on rows of features (said, and written into the run's
    config), the image weight on images; a weight the user sets is kept."""
    import numpy as np

    import semireg
    from semireg.methods.pimodel import IMAGE_WEIGHT, VECTOR_WEIGHT

    y = np.where(np.arange(40) < 9, np.arange(40) % 3, -1)
    kw = {"method": "pimodel", "steps": 2, "batch_size": 4, "num_classes": 3, "model.hidden": [8]}
    rows = np.random.default_rng(0).normal(size=(40, 5)).astype("float32")
    assert semireg.fit("mlp", (rows, y), **kw).config.method["weight"] == VECTOR_WEIGHT != IMAGE_WEIGHT
    assert semireg.fit("mlp", (rows, y), weight=3.0, **kw).config.method["weight"] == 3.0
    images = np.random.default_rng(1).random((40, 1, 6, 6)).astype("float32")
    assert semireg.fit("mlp", (images, y), **kw).config.method["weight"] == IMAGE_WEIGHT


@pytest.mark.parametrize("name", sorted(METHODS))
def test_classes_handed_to_the_strong_view_are_the_weak_views_predictions(name):
    """The vector strong view keeps swap donors within a predicted class: a method that passes classes
    must pass its own weak-view argmax, one per unlabelled row (the FixMatch family does)."""
    spec, model = get_method(name), tiny_model()
    opts = _options_using_unlabelled(name)
    batch, _ = make_batch(spec, opts, model)
    handed = []
    plain = batch.strong
    batch.strong = lambda x, predicted=None: handed.append(predicted) or plain(x)
    with torch.no_grad():
        expected = model(batch.x_u).argmax(dim=1)  # (16,) train-mode pass, as the step's weak pass
    spec.step(model, batch, opts)
    given = [p for p in handed if p is not None]
    if name in ("fixmatch", "uda", "flexmatch", "freematch"):
        assert given, f"{name} gives the strong view no classes"
    for predicted in given:
        assert torch.equal(predicted, expected)
