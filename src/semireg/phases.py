"""Multi-network training: several modules, phases that train some while the others stay frozen.

A `System` is data: a `ModuleDict` of networks (a module used in several places shares its
weights), a list of `Phase`s run in written order every round (each names the modules it trains,
its optimizer, its loss and how many steps it runs per round), and `state`, a `ModuleDict` of loss
state (buffers such as BEGAN's k) that losses update, that is logged and that checkpoints hold.

`phase_loop.train_system` is the loop. Every optimizer step is visible in it:

    for round:
        for phase in phases:
            lr = phase.optimizer.lr * phase.lr_scale(state)  # when the phase has an lr_scale
            for _ in range(phase.steps):
                with trained_only(nets, phase.trains):      # others: no grad, BatchNorm frozen
                    terms = phase.loss(nets, batches, state)
                    backward(terms["loss"]); optimizers[phase.name].step()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from .errors import ConfigError
from .hardware import fusable

# ----------------------------------------------------------------------------- loss terms


def reduce_per_sample(value: torch.Tensor, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """A scalar from a per-sample loss (B,): the mean, or with `sample_weight` (B,) the weighted mean.

    A scalar `value` passes through (it cannot take sample weights)."""
    if value.dim() == 0:
        if sample_weight is not None:
            raise ValueError("sample weights need a per-sample loss of shape (B,), got a scalar")
        return value
    if value.dim() != 1:
        raise ValueError(f"a per-sample loss has shape (B,), got {tuple(value.shape)}")
    if sample_weight is None:
        return value.mean()
    if sample_weight.shape != value.shape:
        raise ValueError(f"sample_weight has shape {tuple(sample_weight.shape)}, the loss {tuple(value.shape)}")
    return (value * sample_weight).sum() / sample_weight.sum().clamp_min(1e-12)


class Terms:
    """Named loss terms, added wherever they are computed; `out()` is the dict a step returns.

    `add` puts `weight * term` into the total (`"loss"`) and logs the unweighted term; `log`
    records a value that is not optimised (an accuracy, k, M_global). A helper that computes a
    term can take the `Terms` and add to it, as Keras' `add_loss` does from inside a layer.
    """

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.logged: dict[str, torch.Tensor] = {}

    def add(
        self,
        name: str,
        value: torch.Tensor,
        weight: float | torch.Tensor = 1.0,
        sample_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`value`: a scalar or a per-sample loss (B,); `weight` may be a tensor (loss state, e.g. -k)."""
        if name in self.logged:
            raise ValueError(f"loss term '{name}' added twice")
        value = reduce_per_sample(value, sample_weight)
        self.logged[name] = value.detach()
        weighted = value if isinstance(weight, float) and weight == 1.0 else value * weight
        self.total = weighted if self.total is None else self.total + weighted
        return value

    def log(self, name: str, value: torch.Tensor | float) -> None:
        self.logged[name] = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(float(value))

    def out(self) -> dict[str, torch.Tensor]:
        if self.total is None:
            raise ValueError("no loss term was added")
        return {"loss": self.total, **self.logged}


# ----------------------------------------------------------------------------- phases


@dataclass(frozen=True)
class OptimizerSpec:
    """One phase's optimizer, as data."""

    name: str = "adam"  # adam | sgd | rmsprop
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0
    weight_decay: float = 0.0

    def build(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if self.name == "adam":
            fused = fusable(params) or None  # as the single-network loop's Adam (hardware.fusable)
            return torch.optim.Adam(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay, fused=fused)
        if self.name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if self.name == "rmsprop":
            return torch.optim.RMSprop(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        raise ConfigError(f"unknown optimizer '{self.name}' (known: adam, sgd, rmsprop)")


@dataclass(frozen=True)
class PhaseBatch:
    x: torch.Tensor  # (B, ...) images
    y: torch.Tensor  # (B,) labels (ignored by unsupervised systems)


# (nets, batches drawn for this step, loss state) -> {"loss": total, other named terms...}
PhaseLoss = Callable[[nn.ModuleDict, list[PhaseBatch], nn.ModuleDict], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Phase:
    name: str
    trains: tuple[str, ...]  # names in System.nets; every other module is frozen during this phase
    loss: PhaseLoss
    optimizer: OptimizerSpec = OptimizerSpec()
    steps: int = 1  # steps per round
    batches: int = 1  # batches drawn per step (e.g. 2: an image and another image to swap with)
    # The phase's learning rate as a multiple of optimizer.lr, read from loss state once per round before
    # the phase's steps (BEGAN halves it when M_global stalls); None: the optimizer's lr throughout.
    lr_scale: Callable[[nn.ModuleDict], float] | None = None
    # Normalisation layers of the frozen modules: "eval" (running statistics, which stay as they are:
    # Keras' trainable=False) or "batch" (the batch's statistics, as GAN code that never switches its
    # networks' mode computes them; their running statistics then follow these batches too).
    frozen_norms: str = "eval"


@dataclass
class System:
    nets: nn.ModuleDict
    phases: list[Phase]
    state: nn.ModuleDict = field(default_factory=nn.ModuleDict)  # loss state: buffers, no parameters
    # (system, data, out_dir or None, round, final) -> metrics; pictures go to out_dir
    evaluate: Callable[..., dict[str, Any]] | None = None
    needs_labels: bool = False  # True: phases read batch.y, so fit_system must be given labels
    needs_test_set: bool = False  # evaluate reads data.eval_sets["test"]
    headline: tuple[str, ...] = ()  # final metrics printed in the summary table

    def check(self) -> None:
        names = set(self.nets)
        if not self.phases:
            raise ConfigError("a system needs at least one phase")
        seen = set()
        for phase in self.phases:
            if phase.name in seen:
                raise ConfigError(f"phase '{phase.name}' declared twice")
            seen.add(phase.name)
            unknown = [n for n in phase.trains if n not in names]
            if unknown or not phase.trains:
                raise ConfigError(
                    f"phase '{phase.name}' trains {unknown or 'nothing'}; the system's modules are {sorted(names)}"
                )
            if phase.frozen_norms not in ("eval", "batch"):
                raise ConfigError(
                    f"phase '{phase.name}': frozen_norms is 'eval' or 'batch', not '{phase.frozen_norms}'"
                )
            if phase.steps < 1 or phase.batches < 1:
                raise ConfigError(f"phase '{phase.name}': steps and batches must be >= 1")
        if any(True for _ in self.state.parameters()):
            raise ConfigError("System.state holds loss state as buffers; it must not have parameters")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def trained_parameters(nets: nn.ModuleDict, trains: tuple[str, ...]) -> list[nn.Parameter]:
    """The parameters a phase trains, each once (a module shared between names counts once)."""
    seen: dict[int, nn.Parameter] = {}
    for name in trains:
        for p in nets[name].parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


@contextmanager
def trained_only(nets: nn.ModuleDict, trains: tuple[str, ...], frozen_norms: str = "eval") -> Iterator[None]:
    """Inside: only the parameters of `trains` require gradients, and normalisation layers of the
    other modules run in eval mode, so their running statistics do not move (Keras' trainable=False);
    with frozen_norms="batch" they keep their mode (batch statistics in training).

    Dropout in frozen modules keeps the module's mode, as in Keras. A parameter shared by a trained
    and a frozen name is trained. Gradients still flow *through* frozen modules to trained ones.
    """
    trained_ids = {id(p) for p in trained_parameters(nets, trains)}
    trained_modules = {id(m) for name in trains for m in nets[name].modules()}
    saved_grad = [(p, p.requires_grad) for p in nets.parameters()]
    to_eval = (
        [m for m in nets.modules() if isinstance(m, _NormBase) and m.training and id(m) not in trained_modules]
        if frozen_norms == "eval"
        else []
    )
    for p, _ in saved_grad:
        p.requires_grad_(id(p) in trained_ids)
    for m in to_eval:
        m.eval()
    try:
        yield
    finally:
        for p, flag in saved_grad:
            p.requires_grad_(flag)
        for m in to_eval:
            m.train()
