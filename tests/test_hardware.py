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
from semireg.models import MODELS, build_model


@pytest.mark.parametrize("flags,expected", [
    ({"avx512f", "amx_bf16", "amx_tile"}, "bf16-mixed"),
    ({"avx512f", "avx512_bf16"}, "bf16-mixed"),
    ({"avx2", "avx512f"}, "32-true"),
    (set(), "32-true"),
])
def test_auto_precision_on_cpu_follows_the_bf16_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    choice = hardware.resolve_precision("auto", "cpu")
    assert choice.value == expected
    assert ("has " + next(iter(f for f in hardware.BF16_CPU_FLAGS if f in flags))) in choice.reason \
        if expected == "bf16-mixed" else "none of" in choice.reason


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


def tiny(**train):
    base = {"data": {"dataset": "digits", "n_labeled": 200, "n_test": 100}, "model": {"name": "cnn_small"},
            "train": {"steps": 6, "batch_size": 16, "progress": False, "log_every": 3, "threads": 1, **train}}
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
