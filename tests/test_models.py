import pytest
import torch

from semireg.models import MODELS, build_model
from semireg.models.droppath import DropPath

SIZES = {"resnet50v2": 72}  # the post's crop size; every other image model runs at 32x32


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_a_batch_to_logits_and_every_parameter_learns(name):
    in_shape = (784,) if name == "mlp" else (3, SIZES.get(name, 32), SIZES.get(name, 32))
    if name in ("cnn_keras", "cnn_bn"):
        in_shape = (1, 28, 28)
    torch.manual_seed(0)
    model = build_model(name, in_shape, 10)
    x = torch.rand(4, *in_shape)
    logits = model(x)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    logits.logsumexp(1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a gradient: {no_grad[:5]}"


def _takes_drop_path(name):
    import inspect

    return "drop_path" in inspect.signature(MODELS[name]).parameters


@pytest.mark.parametrize("name", [n for n in sorted(MODELS) if _takes_drop_path(n)])
def test_stochastic_depth_drops_residual_branches_in_training_only(name):
    torch.manual_seed(0)
    size = SIZES.get(name, 32)
    x = torch.rand(8, 3, size, size)
    plain = build_model(name, (3, size, size), 10).eval()
    noisy = build_model(name, (3, size, size), 10, drop_path=0.5)
    noisy.load_state_dict(plain.state_dict())
    noisy.eval()
    assert torch.allclose(noisy(x), plain(x), atol=1e-6)  # evaluation: every branch runs, unscaled
    rates = [m.rate for m in noisy.modules() if isinstance(m, DropPath)]
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.5) and rates[0] > 0  # linear, last = 0.5
    noisy.train()
    with torch.no_grad():
        a, b = noisy(x), noisy(x)
    assert not torch.allclose(a, b)  # another draw of dropped branches


def test_drop_path_keeps_the_expected_value_and_drops_whole_samples():
    torch.manual_seed(0)
    drop = DropPath(0.25).train()
    branch = torch.ones(20000, 3, 2, 2)
    out = drop(branch)
    per_sample = out.flatten(1)
    assert (
        (per_sample == 0).all(1) | torch.isclose(per_sample, torch.tensor(1 / 0.75)).all(1)
    ).all()  # a sample's branch goes whole
    assert float((per_sample[:, 0] == 0).float().mean()) == pytest.approx(0.25, abs=0.02)
    assert float(out.mean()) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(Exception, match="does not take option 'drop_path'"):
        build_model("cnn_small", (3, 32, 32), 10, drop_path=0.1)


def test_earlier_model_names_still_build_and_resolve():
    from semireg.config import from_kwargs
    from semireg.models import ALIASES, MODELS, build_model

    for old, new in ALIASES.items():
        assert new in MODELS and old not in MODELS
        assert from_kwargs({"model.name": old}).model.name == new  # an old run directory's config resolves
        a, b = build_model(old, (1, 28, 28), 10), build_model(new, (1, 28, 28), 10)
        assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


def test_the_mlp_norm_follows_the_input_kind_and_its_options():
    """Rows of features get LayerNorm (a row's output does not depend on the rest of its batch),
    flattened images the paper's BatchNorm; `norm` chooses, `plain_norm` drops the learned scale
    and shift, `logit_bn` normalises the logits too; an unknown norm is refused by name."""
    import torch
    from torch import nn

    from semireg.errors import ConfigError

    def layers(model, kind):
        return [m for m in model.modules() if isinstance(m, kind)]

    vectors, images = build_model("mlp", (5,), 3, hidden=[8, 8]), build_model("mlp", (1, 4, 4), 3, hidden=[8, 8])
    assert len(layers(vectors, nn.LayerNorm)) == 2 and not layers(vectors, nn.BatchNorm1d)
    assert len(layers(images, nn.BatchNorm1d)) == 2 and not layers(images, nn.LayerNorm)
    assert len(layers(build_model("mlp", (5,), 3, hidden=[8], norm="batch"), nn.BatchNorm1d)) == 1
    bare = build_model("mlp", (5,), 3, hidden=[8], norm="none")
    assert not layers(bare, nn.LayerNorm) and not layers(bare, nn.BatchNorm1d)
    authors = build_model("mlp", (1, 4, 4), 3, hidden=[8], plain_norm=True, logit_bn=True)
    norms = layers(authors, nn.BatchNorm1d)
    assert [m.num_features for m in norms] == [8, 3] and all(m.weight is None for m in norms)
    # A row's logits under LayerNorm are the same alone as in any batch.
    x = torch.randn(6, 5)
    vectors.train()
    assert torch.allclose(vectors(x)[:1], vectors(x[:1]), atol=1e-6)
    with pytest.raises(ConfigError, match="model.norm: 'group'"):
        build_model("mlp", (5,), 3, norm="group")


def test_the_mlp_hidden_noise_perturbs_training_passes_only():
    """`noise` adds Gaussian noise of that spread to every hidden layer's output while training; in
    evaluation the network is the same function as one built without it."""
    import torch

    torch.manual_seed(0)
    noisy = build_model("mlp", (5,), 3, hidden=[16, 16], noise=0.5)
    clean = build_model("mlp", (5,), 3, hidden=[16, 16])
    with torch.no_grad():
        for mine, theirs in zip(clean.parameters(), noisy.parameters(), strict=True):
            mine.copy_(theirs)
    x = torch.randn(64, 5)
    noisy.train(), clean.train()
    first, second = noisy(x), noisy(x)
    assert not torch.allclose(first, second) and not torch.allclose(first, clean(x))
    noisy.eval(), clean.eval()
    assert torch.equal(noisy(x), clean(x))
    # the spread is the option's: the first hidden layer's output moves by N(0, 0.5^2)
    noisy.train()
    head = noisy[:4]  # Flatten, Linear, LayerNorm, ReLU, then the noise
    moved = noisy[:5](x) - head(x)
    assert abs(moved.std().item() - 0.5) < 0.05


def test_the_mlp_input_noise_perturbs_the_input_of_training_passes_only():
    import torch

    torch.manual_seed(0)
    model = build_model("mlp", (5,), 3, hidden=[16], input_noise=0.3)
    x = torch.randn(2000, 5)
    model.train()
    moved = model[:2](x) - x  # Flatten, then the input noise
    assert abs(moved.std().item() - 0.3) < 0.02
    model.eval()
    assert torch.equal(model[:2](x), x)


def test_the_mlp_noise_keeps_the_activation_dtype_and_its_spread_under_bf16_and_float32_draws_as_before():
    """The noise is drawn in float32 and cast (torch's fast CPU normal is float32's): under bf16 the output
    stays bf16, moves by N(0, std^2) and keeps the input's gradient; in float32 it is exactly what
    x + std * randn_like(x) gives from the same generator state."""
    from semireg.models.mlp import GaussianNoise

    layer = GaussianNoise(0.5).train()
    x = torch.randn(400, 300, dtype=torch.bfloat16, requires_grad=True)
    out = layer(x)
    assert out.dtype == torch.bfloat16
    assert abs((out.float() - x.float()).std().item() - 0.5) < 0.01
    out.float().sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    x32 = torch.randn(64, 40)
    torch.manual_seed(3)
    drawn = layer(x32)
    torch.manual_seed(3)
    assert torch.equal(drawn, x32 + 0.5 * torch.randn_like(x32))


def test_the_mlp_noise_bank_adds_fresh_windows_of_the_spread_and_keeps_the_bank():
    """`noise_bank`: every training pass adds a window of values drawn once, at a drawn offset: the spread
    is the option's, two passes differ, the dtype and the input's gradient are kept, the bank itself is
    never written (a float32 window is a view of it), the same seed builds the same bank (a resumed run
    rebuilds it) and no checkpoint holds it; a pass larger than the bank draws fresh values."""
    from semireg.errors import ConfigError
    from semireg.models.mlp import GaussianNoise

    torch.manual_seed(0)
    layer = GaussianNoise(0.5, bank=200_000).train()
    saved = layer.bank.clone()
    x = torch.full((400, 300), 2.0)
    first, second = layer(x), layer(x)
    assert abs(first.std().item() - 0.5) < 0.01 and abs(first.mean().item() - 2.0) < 0.01
    assert not torch.equal(first, second)
    assert torch.equal(layer.bank, saved)
    assert layer.state_dict() == {}
    torch.manual_seed(0)
    assert torch.equal(GaussianNoise(0.5, bank=200_000).bank, saved)
    xb = torch.randn(100, 300, dtype=torch.bfloat16, requires_grad=True)
    out = layer(xb)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert torch.equal(xb.grad, torch.ones_like(xb))
    big = layer(torch.zeros(1000, 300))  # 300,000 values > the bank's 200,000: fresh draws
    assert abs(big.std().item() - 0.5) < 0.01
    assert torch.equal(layer.eval()(x), x)
    model = build_model("mlp", (1, 28, 28), 10, hidden=[32, 16], noise=0.5, noise_bank=4096)
    assert [m.bank_size for m in model.modules() if isinstance(m, GaussianNoise)] == [4096, 4096]
    with pytest.raises(ConfigError, match="model.noise_bank"):
        build_model("mlp", (5,), 3, noise=0.5, noise_bank=-1)
