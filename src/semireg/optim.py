"""Optimisation pieces of the step loop: optimizers by name, learning-rate schedules, the EMA of
the weights, and validation-driven control (LR reduction on plateau, early stopping)."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from .config import RunConfig
from .errors import ConfigError
from .hardware import fusable
from .models import state_buffers


def build_optimizer(params, cfg: RunConfig) -> torch.optim.Optimizer:
    t = cfg.train
    params = list(params)
    if t.optimizer in ("adam", "adamw"):
        adam = torch.optim.Adam if t.optimizer == "adam" else torch.optim.AdamW
        return adam(params, lr=t.lr, weight_decay=t.weight_decay, fused=fusable(params) or None)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay)
    if t.optimizer == "adadelta":
        # Keras' Adadelta defaults (seed 000): lr 1.0, rho 0.95, epsilon 1e-7.
        return torch.optim.Adadelta(params, lr=t.lr, rho=0.95, eps=1e-7, weight_decay=t.weight_decay)
    raise ConfigError(f"train.optimizer: unknown optimizer '{t.optimizer}'")


def lr_factor(step: int, cfg: RunConfig, total: int) -> float:
    """Multiplier of the base learning rate at `step` (linear warm-up, then the schedule)."""
    t = cfg.train
    if t.warmup_steps and step < t.warmup_steps:
        return (step + 1) / t.warmup_steps
    progress = (step - t.warmup_steps) / max(1, total - t.warmup_steps)
    if t.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if t.schedule == "linear":
        return 1.0 - progress
    if t.schedule == "step":
        return t.step_gamma ** sum(progress >= m for m in t.step_milestones)
    return 1.0


class EMA:
    """An exponential moving average of a model's weights; buffers are copied (those a state_dict
    holds: non-persistent ones are constants, and the MLP's noise bank is 160 MB). Never trained.

    With `warmup` the t-th update (t = 0, 1, ...) uses decay min(decay, (1 + t) / (10 + t)), the
    warm-up of TensorFlow's ExponentialMovingAverage(num_updates=...): a fixed 0.999 would keep
    e^-1 of the initial weights after 1,000 steps and 90 % after 100, so a short budget would
    evaluate mostly the untrained network. Once (1 + t)/(10 + t) passes `decay` (t > 9/(1 - decay) - 1,
    about 9,000 updates at 0.999) the average is the plain one.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.decay, self.warmup = decay, warmup
        self.updates = 0  # updates so far: the warm-up's t, checkpointed with the weights
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update uses."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = [p for p in self.module.parameters()]
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.current_decay())
        self.updates += 1
        for b_ema, b in zip(state_buffers(self.module), state_buffers(model), strict=True):
            b_ema.copy_(b)


class Plateau:
    """Validation-driven control: learning-rate reduction on plateau and early stopping (Keras semantics).

    `scale` multiplies the scheduled learning rate. Patience counts evaluations without an
    improvement of the monitored value by more than `min_delta`.
    """

    def __init__(self, mode: str, patience_lr: int, factor: float, patience_stop: int, min_delta: float = 1e-4) -> None:
        self.sign = 1.0 if mode == "min" else -1.0
        self.patience_lr, self.factor, self.patience_stop, self.min_delta = (
            patience_lr,
            factor,
            patience_stop,
            min_delta,
        )
        self.best = math.inf
        self.wait_lr = self.wait_stop = 0
        self.scale = 1.0
        self.best_step = 0

    def update(self, value: float, step: int) -> tuple[bool, bool]:
        """Record one evaluation; returns (improved, stop)."""
        v = self.sign * value
        improved = v < self.best - self.min_delta
        if improved:
            self.best, self.best_step = v, step
            self.wait_lr = self.wait_stop = 0
            return True, False
        self.wait_lr += 1
        self.wait_stop += 1
        if self.patience_lr and self.wait_lr >= self.patience_lr:
            self.scale *= self.factor
            self.wait_lr = 0
        return False, bool(self.patience_stop and self.wait_stop >= self.patience_stop)

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("best", "wait_lr", "wait_stop", "scale", "best_step")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
