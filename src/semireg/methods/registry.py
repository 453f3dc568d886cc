from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


@dataclass
class Batch:
    """What one training step sees. Inputs are already in their weak view (flip/crop, if configured)."""

    x_l: torch.Tensor  # (B, ...) labelled inputs
    y_l: torch.Tensor  # (B,) labels
    x_u: torch.Tensor | None = None  # (Bu, ...) unlabelled inputs, when the method uses them
    # Weak view -> strong view (RandAugment on top of the same crop); drawn from the run's generator.
    # Its optional second argument (Bu,): the classes predicted for the weak view (vectors' swap donors).
    strong: Callable[..., torch.Tensor] | None = None
    teacher: nn.Module | None = None  # a frozen teacher in eval mode, for methods that distil from one
    # Weak view of raw images (a second, independent draw for Pi-model and Mean Teacher).
    weak: Callable[[torch.Tensor], torch.Tensor] | None = None
    x_u_raw: torch.Tensor | None = None  # (Bu, ...) the unlabelled images before the weak view
    idx_u: torch.Tensor | None = None  # (Bu,) their indices in the unlabelled set (per-sample state, FlexMatch)
    ema: nn.Module | None = None  # the EMA copy of the model (never trained), for methods that need it
    state: nn.Module | None = None  # the method's own state (buffers updated without gradient, checkpointed)
    progress: float = 1.0  # step / total steps, for ramp-ups
    # Per-rank (B, ...) -> every data-parallel rank's, concatenated (world * B, ...); the identity in
    # one process. Running state is updated from gathered tensors so that it stays the same on every rank.
    gather: Callable[[torch.Tensor], torch.Tensor] = lambda x: x


StepFn = Callable[[nn.Module, Batch, Any], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class DataStats:
    """What a method's data-dependent defaults may read of the training inputs (labelled and unlabelled)."""

    is_vector: bool  # rows of features (N, D) rather than images
    # sqrt(sum over features of their variance): a row's RMS distance from the mean row (vectors only)
    rms_radius: float | None = None


# (options, stats) -> (the options with their data-dependent defaults filled in, a one-line notice or None)
DataDefaultsFn = Callable[[Any, DataStats], tuple[Any, str | None]]


def by_input_kind(opts: Any, key: str, image: float, vector: float, stats: DataStats) -> tuple[Any, str | None]:
    """A data default that only depends on the input kind: option `key`, left None, becomes `image` on
    images and `vector` on rows of features (said in one line); a value the user set is kept."""
    if getattr(opts, key) is not None:
        return opts, None
    if not stats.is_vector:
        return dataclasses.replace(opts, **{key: image}), None
    note = f"method.{key} = {vector:g} (vectors; {image:g} on images; set it to choose another)"
    return dataclasses.replace(opts, **{key: vector}), note


@dataclass(frozen=True)
class MethodSpec:
    name: str
    step: StepFn
    options: type  # a dataclass of the method's options, with defaults
    uses_unlabeled: Callable[[Any], bool]  # options -> whether batches need x_u
    description: str = ""
    needs_teacher: bool = False  # the run must name a teacher run directory (config key `teacher`)
    needs_ema: bool = False  # the run must keep an EMA of the weights (train.ema_decay > 0)
    # (options, num_classes, num_unlabeled) -> an nn.Module of buffers the step updates; None: stateless.
    make_state: Callable[[Any, int, int], nn.Module] | None = None
    mu: int | None = None  # the paper's unlabelled-to-labelled batch ratio (used when train.mu = 0)
    # The weak unlabelled view `x_u` only supplies targets: the loss must not differentiate through
    # it (checked by the registry-iterated tests).
    x_u_is_target: bool = False
    unsup_term: str | None = "unsup"  # the returned term (attached to the graph) a test differentiates alone
    # Defaults that depend on the data (VAT's radius on vectors), filled in once before the run opens.
    data_defaults: DataDefaultsFn | None = None


METHODS: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    *,
    options: type,
    uses_unlabeled: Callable[[Any], bool],
    description: str = "",
    needs_teacher: bool = False,
    needs_ema: bool = False,
    make_state: Callable[[Any, int, int], nn.Module] | None = None,
    mu: int | None = None,
    x_u_is_target: bool = False,
    unsup_term: str | None = "unsup",
    data_defaults: DataDefaultsFn | None = None,
):
    def wrap(step: StepFn) -> StepFn:
        if name in METHODS:
            raise ValueError(f"method '{name}' registered twice")
        METHODS[name] = MethodSpec(
            name,
            step,
            options,
            uses_unlabeled,
            description,
            needs_teacher,
            needs_ema,
            make_state,
            mu,
            x_u_is_target,
            unsup_term,
            data_defaults,
        )
        return step

    return wrap


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ConfigError(f"method.name: unknown method '{name}' (known: {', '.join(sorted(METHODS))})")
    return METHODS[name]


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batch accuracy as a detached scalar tensor (no host sync)."""
    return (logits.detach().argmax(dim=1) == y).float().mean()
