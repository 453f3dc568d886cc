"""Models built from a config, and from finished run directories: the weights a run evaluated
(SWA > EMA > model), a frozen teacher, a run's initial weights (`init_from`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import rundir
from .classical import get_classical
from .config import RunConfig, kind_of, method_options, resolve
from .errors import ConfigError, mismatch
from .models import build_model
from .traindata import TrainData


def model_from_config(cfg: RunConfig, data: TrainData) -> nn.Module:
    return build_model(cfg.model.name, data.in_shape, data.num_classes, **cfg.model.builder_options())


def module_with_weights(
    cfg: RunConfig, in_shape: tuple[int, ...], num_classes: int, weights: dict[str, torch.Tensor]
) -> nn.Module:
    """The module a run trained, with `weights` loaded: its registered model, or the module a
    classical method fitted (rebuilt from its own tensors). Raises RuntimeError on weights of
    another model, as load_state_dict does."""
    if kind_of(cfg.method["name"]) == "classical":
        return get_classical(cfg.method["name"]).load(weights, method_options(cfg))
    model = build_model(cfg.model.name, tuple(in_shape), num_classes, **cfg.model.builder_options())
    model.load_state_dict(weights)
    return model


def evaluated_weights(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """The weights a finished run evaluated (SWA average > EMA > the model), and which they are."""
    if state.get("final") is not None:
        return state["final"], state.get("final_kind", "model")
    if state.get("ema") is not None:
        return state["ema"], "ema"
    return state["model"], "model"


def finished_run(run_dir: Path, what: str) -> tuple[RunConfig, dict[str, Any]]:
    """The resolved config and the checkpoint of a finished run directory."""
    for name in ("config.json", rundir.CHECKPOINT):
        if not (run_dir / name).exists():
            raise ConfigError(f"{what} {run_dir}: no {name}; train the {what} first")
    cfg = resolve(rundir.read_config(run_dir))
    return cfg, rundir.load_checkpoint(run_dir / rundir.CHECKPOINT)


def load_finished_model(run_dir: str | Path, data: TrainData, what: str = "run") -> tuple[nn.Module, str, int]:
    """(model with the weights a finished run evaluated, which weights they are, its last step)."""
    run_dir = Path(run_dir)
    cfg, state = finished_run(run_dir, what)
    weights, kind = evaluated_weights(state)
    try:
        model = module_with_weights(cfg, data.in_shape, data.num_classes, weights)
    except (RuntimeError, KeyError) as exc:
        raise ConfigError(f"{what} {run_dir}: checkpoint of another model ({mismatch(exc)})") from None
    return model, kind, int(state["step"])


def load_teacher(run_dir: str | Path, data: TrainData, device: torch.device) -> nn.Module:
    """The frozen, eval-mode model a finished run evaluated (its SWA/EMA weights where it used them)."""
    model, _, _ = load_finished_model(run_dir, data, "teacher")
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def initial_weights(cfg: RunConfig) -> dict[str, torch.Tensor] | None:
    """`init_from`: the weights that run evaluated, to start this one from (None without it)."""
    if not cfg.init_from:
        return None
    return evaluated_weights(finished_run(Path(cfg.init_from), "init_from run")[1])[0]
