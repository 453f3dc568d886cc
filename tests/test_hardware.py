"""What "auto" resolves to: bf16 where the device computes it natively, channels-last for
convolutional models on images; and that the choice is recorded and `32-true` is today's fp32."""

import json

import pytest
import torch
from torch import nn

from semireg import hardware
from semireg.config import from_kwargs
from semireg.engine import train
from semireg.errors import ConfigError
from semireg.methods import METHODS
from semireg.models import MODELS, build_model


@pytest.mark.parametrize(
    "flags,expected",
    [
        ({"avx512f", "amx_bf16", "amx_tile"}, "bf16-mixed"),
        ({"avx512f", "avx512_bf16"}, "bf16-mixed"),
        ({"avx2", "avx512f"}, "32-true"),
        (set(), "32-true"),
    ],
)
def test_auto_precision_on_cpu_follows_the_bf16_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    choice = hardware.resolve_precision("auto", "cpu")
    assert choice.value == expected
    assert (
        ("has " + next(iter(f for f in hardware.BF16_CPU_FLAGS if f in flags))) in choice.reason
        if expected == "bf16-mixed"
        else "none of" in choice.reason
    )


def test_an_explicit_precision_is_kept_whatever_the_hardware(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert hardware.resolve_precision("32-true", "cpu").value == "32-true"
    assert hardware.resolve_precision("bf16-mixed", "cpu").reason == "set in the config"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_auto_channels_last_is_on_exactly_for_convolutional_models_on_images(name):
    shape = (3, 32, 32) if name != "mlp" else (64,)
    model = build_model(name, shape, 10)
    choice = hardware.resolve_channels_last("auto", model, len(shape) + 1)
    assert choice.value == (len(shape) == 3 and any(isinstance(m, nn.Conv2d) for m in model.modules()))
    assert hardware.resolve_channels_last("auto", model, 2).value is False  # vectors have no layout
    assert hardware.resolve_channels_last(True, model, 2).value is False


def tiny(method: dict | None = None, **train):
    base = {
        "data": {"dataset": "digits", "n_labeled": 200, "n_test": 100},
        "model": {"name": "cnn_small"},
        "train": {"steps": 6, "batch_size": 16, "progress": False, "log_every": 3, "threads": 1, **train},
    }
    if method is not None:
        base["method"] = method
    return from_kwargs({}, base=base)


def test_the_choice_is_written_to_meta_and_printed_once(tmp_path, capsys):
    train(tiny(), tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    expected = hardware.resolve_precision("auto", "cpu")
    assert meta["precision"] == expected.value
    assert meta["speed"]["precision"] == {"value": expected.value, "requested": "auto", "reason": expected.reason}
    assert meta["speed"]["channels_last"]["value"] is True  # digits are 8x8 images, cnn_small convolves
    err = capsys.readouterr().err
    assert err.count("semireg: precision") == 1 and expected.reason in err


def test_32_true_is_plain_float32_arithmetic(tmp_path):
    """precision=32-true channels_last=false is the behaviour before "auto": float32 parameters in
    the default (NCHW) layout, and meta.json says so."""
    res = train(tiny(precision="32-true", channels_last=False), tmp_path / "run")
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in res.model.parameters())
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["precision"] == "32-true" and meta["speed"]["channels_last"]["value"] is False


def test_channels_last_takes_true_false_or_auto_only():
    assert tiny(channels_last=True).train.channels_last is True
    assert tiny().train.channels_last == "auto"
    with pytest.raises(ConfigError, match="channels_last"):
        tiny(channels_last="sometimes")
    with pytest.raises(ConfigError, match="channels_last"):
        tiny(channels_last=3)


STATEFUL = sorted(name for name, spec in METHODS.items() if spec.make_state is not None and not spec.needs_teacher)


@pytest.mark.parametrize("method", STATEFUL)
def test_method_state_stays_float32_under_bf16(tmp_path, method):
    """Thresholds, class statistics and per-sample labels are running sums: under autocast they must
    not drop to bf16 (8 bits of mantissa would stall an EMA with momentum 0.999)."""
    options = {"name": method}
    if "threshold" in METHODS[method].options.__dataclass_fields__:
        options["threshold"] = 0.5  # low enough that the masked terms and their state are active
    if "dist_align" in METHODS[method].options.__dataclass_fields__:
        options["dist_align"] = True  # these methods' only running state
    train(tiny(options, precision="bf16-mixed", steps=4, unlabeled_batch_size=16), tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["method_state"]
    floats = {k: v.dtype for k, v in state.items() if v.is_floating_point()}
    assert floats and all(dtype == torch.float32 for dtype in floats.values()), floats
