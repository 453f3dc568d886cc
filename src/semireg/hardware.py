"""What the hardware computes fast, the speed settings `"auto"` resolves to, and which parameters
torch's fused optimizer kernels take.

`train.precision = "auto"` is bf16-mixed where the device computes bf16 natively and fp32
elsewhere: a CUDA GPU that supports bf16, or a CPU with AMX (amx_bf16) or AVX-512 BF16
(avx512_bf16) — oneDNN runs bf16 convolutions and matmuls there several times faster than fp32
(docs/performance.md). `train.channels_last = "auto"` is on for 4-D inputs into a model with a 2-D
convolution, where oneDNN and cuDNN pick faster kernels for NHWC; a plain MLP gains nothing.
Every choice comes with the reason, written to meta.json and printed once at the start.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def device_kind(accelerator: str) -> str:
    """The device a Fabric with `accelerator` trains on: "cuda", "mps" or "cpu"."""
    if accelerator in ("auto", "cuda", "gpu") and torch.cuda.is_available():
        return "cuda"
    if accelerator in ("auto", "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def native_bf16(kind: str) -> tuple[bool, str]:
    """(whether `kind` computes bf16 natively, why)."""
    if kind == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, f"CUDA device {torch.cuda.get_device_name(0)} supports bf16"
        return False, f"CUDA device {torch.cuda.get_device_name(0)} has no bf16"
    if kind == "cpu":
        found = [flag for flag in BF16_CPU_FLAGS if flag in cpu_flags()]
        if found:
            return True, f"CPU has {', '.join(found)}"
        return False, f"CPU has none of {', '.join(BF16_CPU_FLAGS)}"
    return False, f"no native bf16 path on {kind}"


@dataclass(frozen=True)
class Choice:
    """A resolved speed setting: the value used, what was asked for, and why."""

    value: object
    requested: object
    reason: str


def resolve_precision(requested: str, accelerator: str) -> Choice:
    """The Lightning Fabric precision `requested` ("auto" or any Fabric precision) means here."""
    if requested != "auto":
        return Choice(requested, requested, "set in the config")
    native, why = native_bf16(device_kind(accelerator))
    return Choice("bf16-mixed" if native else "32-true", requested, why)


def is_convolutional(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def resolve_channels_last(requested: bool | str, model: nn.Module, input_ndim: int) -> Choice:
    """Whether the model and its 4-D inputs go channels-last (memory format only: same results)."""
    if requested != "auto":
        return Choice(bool(requested) and input_ndim == 4, requested, "set in the config")
    if input_ndim != 4:
        return Choice(False, requested, f"{input_ndim}-D inputs")
    if not is_convolutional(model):
        return Choice(False, requested, "no 2-D convolution in the model")
    return Choice(True, requested, "4-D inputs into a convolutional model")


def describe(precision: Choice, channels_last: Choice) -> str:
    """The one line printed at the start of a run."""

    def part(name: str, c: Choice) -> str:
        how = f"auto: {c.reason}" if c.requested == "auto" else c.reason
        return f"{name} {c.value} ({how})"

    return f"semireg: {part('precision', precision)}, {part('channels_last', channels_last)}"


# torch's fused Adam/AdamW kernels update every parameter in one pass: for the VAT MLP's 1.9 M parameters
# torch's default implementation took 3.0x the fused update's time (benchmarks/speed/adam_fused.py, 2-core
# AMX CPU, one run; benchmarks/results/adam-fused.json).
FUSED_DEVICES = ("cpu", "cuda")


def fusable(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused Adam kernels take these parameters (float, on a device they support)."""
    return bool(params) and all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params)
