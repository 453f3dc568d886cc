import pytest
import torch

from semireg.models import MODELS, build_model

SIZES = {"resnet50v2": 72}  # the post's crop size; every other image model runs at 32x32


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_a_batch_to_logits_and_every_parameter_learns(name):
    in_shape = (784,) if name == "mlp" else (3, SIZES.get(name, 32), SIZES.get(name, 32))
    if name in ("cnn_seed000", "cnn_seed001"):
        in_shape = (1, 28, 28)
    torch.manual_seed(0)
    model = build_model(name, in_shape, 10)
    x = torch.rand(4, *in_shape)
    logits = model(x)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    logits.logsumexp(1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a gradient: {no_grad[:5]}"
