"""VAT's invariants: the power iteration finds H·d, touches no parameter, moves no BN statistic."""

import copy

import pytest
import torch
from torch import nn

from semireg.methods import Batch, get_method
from semireg.methods.common import marginal_kl_to_uniform
from semireg.methods.vat import (
    DEFAULT_XI,
    VATOptions,
    kl_from_logits,
    l2_normalize,
    replayed_rng,
    rng_snapshot,
    vat_direction,
    vat_loss,
)
from semireg.models.mlp import GaussianNoise


def tiny_cnn(bn: type = nn.BatchNorm2d) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), bn(4), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))


def smooth_net() -> nn.Module:
    # No BatchNorm, so the KL Hessian w.r.t. one sample's input is that sample's own.
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 16), nn.Tanh(), nn.Linear(16, 3)
    )


def exact_hessians(model64: nn.Module, x64: torch.Tensor) -> list[torch.Tensor]:
    """H_i = d^2/dr^2 KL(p(x_i) || p(x_i + r)) at r = 0, in float64 by double backpropagation."""
    hs = []
    for xi in x64:
        target = model64(xi[None]).detach()

        def kl(r, xi=xi, target=target):
            return kl_from_logits(target, model64(xi[None] + r.view_as(xi)[None])).sum()

        hs.append(torch.autograd.functional.hessian(kl, torch.zeros(xi.numel(), dtype=torch.float64)))
    return hs


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = smooth_net()
    x = torch.rand(4, 1, 8, 8)  # pixel-like inputs in [0, 1]
    return model, x, exact_hessians(copy.deepcopy(model).double(), x.double())


def test_one_power_iteration_matches_exact_hessian_vector_product(setup):
    model, x, hessians = setup
    d0 = l2_normalize(torch.randn_like(x))
    logits = model(x).detach()
    d1 = vat_direction(model, x, logits, xi=DEFAULT_XI["fp32"], power_iters=1, d=d0)
    hd = torch.stack([h @ d.double().flatten() for h, d in zip(hessians, d0)]).float()
    assert (cosines(d1, hd) >= 0.99).all(), cosines(d1, hd)


def test_a_probe_below_float32_resolution_gives_noise(setup):
    # USB's xi = 1e-6 on a unit-norm d: x + xi*d rounds back to x in many elements. This test shows
    # why the default probe is larger; if it ever passes with 1e-6, the warning in docs is wrong.
    model, x, hessians = setup
    d0 = l2_normalize(torch.randn_like(x))
    d1 = vat_direction(model, x, model(x).detach(), xi=1e-6, power_iters=1, d=d0)
    hd = torch.stack([h @ d.double().flatten() for h, d in zip(hessians, d0)]).float()
    assert cosines(d1, hd).min() < 0.99


def test_many_power_iterations_approach_the_dominant_eigenvector(setup):
    model, x, hessians = setup
    d = vat_direction(model, x, model(x).detach(), xi=DEFAULT_XI["fp32"], power_iters=30)
    top = torch.stack([torch.linalg.eigh(h).eigenvectors[:, -1] for h in hessians]).float()
    assert (cosines(d, top).abs() >= 0.99).all(), cosines(d, top)


def test_power_iteration_gives_no_parameter_gradient():
    model = tiny_cnn()
    x = torch.rand(8, 1, 8, 8)
    logits = model(x).detach()
    vat_direction(model, x, logits, xi=1.0, power_iters=2)
    assert all(p.grad is None for p in model.parameters())


def test_perturbation_has_norm_eps():
    model = tiny_cnn()
    x = torch.rand(8, 1, 8, 8)
    d = vat_direction(model, x, model(x).detach(), xi=1.0, power_iters=1)
    r_adv = 2.5 * d
    assert torch.allclose(r_adv.flatten(1).norm(dim=1), torch.full((8,), 2.5), atol=1e-4)


class HandMadeBatchNorm(nn.Module):
    """A user's own BatchNorm that knows nothing of torch's track_running_stats switch."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(c))

    def forward(self, x):
        mean = x.mean(dim=(0, 2, 3))
        if self.training:
            with torch.no_grad():
                self.running_mean.lerp_(mean, 0.1)
        return x - mean.view(1, -1, 1, 1)


@pytest.mark.parametrize(
    "bn",
    [
        nn.BatchNorm2d,
        nn.SyncBatchNorm,
        nn.LazyBatchNorm2d,
        HandMadeBatchNorm,
        lambda c: nn.InstanceNorm2d(c, affine=True, track_running_stats=True),
    ],
)
def test_perturbed_passes_leave_running_statistics_alone(bn):
    model = tiny_cnn(bn)
    x = torch.rand(8, 1, 8, 8)
    model.eval()
    model(x)  # materialise lazy modules
    model.train()
    logits = model(x).detach()  # the clean pass: statistics may move here
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    assert before, "the model has no running statistics to check"
    vat_loss(model, x, logits, xi=1.0, eps=2.0, power_iters=2)
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    # ... and the switch is restored: a clean pass after VAT updates statistics again.
    model(x + 1.0)
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_target_carries_no_gradient():
    model = tiny_cnn()
    x = torch.rand(8, 1, 8, 8)
    logits = model(x)  # with a graph: the loss must not back-propagate through it
    loss = vat_loss(model, x, logits, xi=1.0, eps=2.0, power_iters=1)
    (g_logits,) = torch.autograd.grad(loss, logits, allow_unused=True)
    assert g_logits is None or torch.count_nonzero(g_logits) == 0


def test_vat_term_alone_trains_every_parameter():
    model = tiny_cnn()
    x = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        logits = model(x)
    vat_loss(model, x, logits, xi=1.0, eps=2.0, power_iters=1).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name


def test_power_iteration_runs_in_float32_under_autocast():
    model = tiny_cnn()
    x = torch.rand(8, 1, 8, 8)
    seen = []
    hook = model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        vat_direction(model, x, logits, xi=1.0, power_iters=1)
    hook.remove()
    assert seen[0] == torch.bfloat16 and seen[1] == torch.float32


@pytest.mark.parametrize("on", ["labeled", "unlabeled", "both"])
def test_vat_step_modes(on):
    spec = get_method("vat")
    model = tiny_cnn()
    batch = Batch(torch.rand(4, 1, 8, 8), torch.randint(0, 3, (4,)), torch.rand(6, 1, 8, 8))
    terms = spec.step(model, batch, VATOptions(on=on, entmin=0.5))
    assert set(terms) >= {"loss", "ce", "vat", "entropy", "train_acc"}
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_marginal_kl_is_zero_for_balanced_predictions_and_log_k_for_one_class():
    k = 4
    balanced = torch.eye(k).repeat(3, 1) * 50.0  # (12, 4): every class predicted by 3 samples
    one_class = torch.zeros(12, k)
    one_class[:, 2] = 50.0
    assert marginal_kl_to_uniform(balanced).item() == pytest.approx(0.0, abs=1e-5)
    assert marginal_kl_to_uniform(one_class).item() == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=1e-4)
    # Two clusters merged into one class (3 classes used of 4) costs log 4 - log 3 when spread evenly.
    merged = torch.eye(k)[torch.tensor([0, 1, 2] * 4)] * 50.0
    assert marginal_kl_to_uniform(merged).item() == pytest.approx(float(torch.log(torch.tensor(4 / 3))), abs=1e-4)


def test_the_balance_term_enters_the_loss_with_its_weight():
    spec = get_method("vat")
    torch.manual_seed(0)
    model = tiny_cnn()
    batch = Batch(torch.rand(4, 1, 8, 8), torch.randint(0, 3, (4,)), torch.rand(6, 1, 8, 8))
    torch.manual_seed(1)
    without = spec.step(model, batch, VATOptions())
    torch.manual_seed(1)
    with_balance = spec.step(model, batch, VATOptions(balance=2.0))
    expected = marginal_kl_to_uniform(model(batch.x_u))
    assert with_balance["balance"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert with_balance["loss"].item() == pytest.approx(without["loss"].item() + 2.0 * expected.item(), rel=1e-5)


def test_the_radius_on_vectors_follows_the_data_scale_and_is_recorded(tmp_path):
    """eps left unset: on vectors VECTOR_EPS_SHARE of the rows' RMS distance from their mean (so the
    same data in other units gets the same perturbation relative to it), written into config.json;
    on images the image radius; a radius the user sets is kept."""
    import json

    import numpy as np

    import semireg
    from semireg.methods.vat import IMAGE_EPS, VECTOR_EPS_SHARE

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype("float32")
    y = np.where(np.arange(60) < 12, np.arange(60) % 3, -1)
    radius = float(np.sqrt(x.astype("float64").var(axis=0).sum()))
    kw = {"method": "vat", "steps": 2, "batch_size": 4, "num_classes": 3, "model.hidden": [8]}
    small = semireg.fit("mlp", (x, y), run_dir=tmp_path / "a", **kw)
    assert small.config.method["eps"] == pytest.approx(VECTOR_EPS_SHARE * radius, rel=1e-3)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["method"]["eps"] == small.config.method["eps"]
    big = semireg.fit("mlp", (10 * x, y), **kw)
    assert big.config.method["eps"] == pytest.approx(10 * small.config.method["eps"], rel=1e-3)
    assert semireg.fit("mlp", (x, y), eps=0.7, **kw).config.method["eps"] == 0.7
    images = np.random.default_rng(1).random((60, 1, 6, 6)).astype("float32")
    kw["model.hidden"] = [4]
    assert semireg.fit("cnn_small", (images, y), **kw).config.method["eps"] == IMAGE_EPS


@pytest.mark.parametrize("on", ["unlabeled", "labeled", "both"])
def test_the_vat_term_vanishes_at_zero_radius_under_batchnorm(on):
    """The clean target and the perturbed passes see the same batch: at a radius of ~0 the VAT term is ~0
    under BatchNorm for every choice of batch (taking the labelled rows' logits from their own pass, under
    other batch statistics, made it large when `on = "both"`)."""
    from semireg.methods import METHODS
    from semireg.methods.registry import Batch
    from semireg.methods.vat import VATOptions
    from semireg.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", (6,), 3, hidden=[16, 16], norm="batch").train()
    batch = Batch(x_l=torch.randn(8, 6) + 2.0, y_l=torch.arange(8) % 3, x_u=torch.randn(24, 6))
    terms = METHODS["vat"].step(model, batch, VATOptions(eps=1e-6, xi=1e-6, on=on))
    assert terms["vat"].item() < 1e-6, terms["vat"].item()


def noisy_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), GaussianNoise(0.5), nn.Linear(16, 3))


def test_replayed_rng_repeats_the_draws_and_leaves_the_stream_where_it_was():
    model = noisy_mlp().train()
    x = torch.rand(5, 1, 8, 8)
    torch.manual_seed(1)
    snap = rng_snapshot(x.device)
    first = model(x)
    with replayed_rng(snap, x.device):
        replayed = model(x)
    after = model(x)
    torch.manual_seed(1)
    model(x)
    unreplayed_after = model(x)
    assert torch.equal(first, replayed)
    assert torch.equal(after, unreplayed_after)
    assert not torch.equal(first, after)  # the noise is there: a new pass draws anew


@pytest.mark.parametrize("on", ["unlabeled", "labeled", "both"])
@pytest.mark.parametrize("same_noise", [False, True])
def test_same_noise_probe_sees_the_clean_pass_network(same_noise, on):
    # Passes of a VAT step: labelled, clean VAT batch (none on "labeled": the labelled pass is it),
    # probe (at r = xi * d), adversarial.
    model = noisy_mlp().train()
    outputs = []
    model[-1].register_forward_hook(lambda m, i, o: outputs.append(o.detach()))
    batch = Batch(torch.rand(4, 1, 8, 8), torch.randint(0, 3, (4,)), torch.rand(6, 1, 8, 8))
    get_method("vat").step(model, batch, VATOptions(eps=1.0, xi=1e-6, same_noise=same_noise, on=on))
    first = 0 if on == "labeled" else 1
    clean, probe = outputs[first], outputs[first + 1]
    gap = (clean - probe).abs().max().item()
    assert (gap < 1e-4) if same_noise else (gap > 1e-2)
