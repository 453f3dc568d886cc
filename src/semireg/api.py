"""The Python API: `fit` and `evaluate`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import from_kwargs, is_system
from .data.arrays import as_images, as_labels, check_classes_present, check_labels, encode_labels, infer_num_classes, notice
from .engine import Result, train
from .errors import ConfigError, DataError
from .evaluate import evaluate, evaluation_mode
from .models import logits_of
from .phase_loop import SystemResult, train_system, train_system_config
from .phases import System
from .systems import SYSTEMS, get_system
from .select import Selection, parse_budget, select_runs
from .traindata import TrainData, data_from_config

Array = np.ndarray | torch.Tensor


def fit(model: nn.Module | str, labeled: tuple[Array, Array], unlabeled: Array | None = None, *,
        method: str = "supervised", steps: int = 1000, seed: int = 0, num_classes: int | None = None,
        eval_data: tuple[Array, Array] | None = None, run_dir: str | Path | None = None,
        overwrite: bool = False, **options: Any) -> Result:
    """Train `model` on `labeled` = (x, y) and, for semi-supervised methods, `unlabeled` = x_u.

    x and x_u are arrays or tensors shaped (N, C, H, W), (N, H, W, C) or (N, D); uint8 is scaled to
    [0, 1]. Labels are class indices 0..K-1 or any other hashable values (strings, ...), which
    become classes by name (`result.metrics["class_names"]`, and the run's report and predictions).
    `options` are any config keys, short or dotted: method options (`eps=2.0`, `xi=1.0`),
    training options (`lr=1e-3`, `batch_size=64`) or `model.dropout=0.5`. `model` is an
    `nn.Module` mapping a batch to logits, or the name of a registered model.
    Returns a Result with `.model` (the trained module, the EMA copy when `ema_decay > 0`) and
    `.metrics` (steps, train time and, with `eval_data`, test metrics).
    """
    data = user_data(labeled, unlabeled, eval_data, num_classes, model if isinstance(model, nn.Module) else None)
    base: dict[str, Any] = {"name": "api", "method": {"name": method}, "train": {"steps": steps, "seed": seed, "progress": False}}
    if isinstance(model, str):
        base["model"] = {"name": model}
    cfg = from_kwargs(options, base=base)
    module = None if isinstance(model, str) else model
    return train(cfg, Path(run_dir) if run_dir is not None else None, model=module, data=data, overwrite=overwrite)


def user_data(labeled: tuple[Array, Array], unlabeled: Array | None, eval_data: tuple[Array, Array] | None,
              num_classes: int | None, model: nn.Module | None, name: str = "api") -> TrainData:
    """A user's arrays as TrainData, every check made (and every inference said) before training."""
    x, (y, names) = as_images(labeled[0], "labeled x"), encode_labels(labeled[1], "labeled y")
    if len(x) != len(y):
        raise DataError(f"labeled: {len(x)} inputs but {len(y)} labels")
    if len(x) == 0:
        raise DataError("labeled: no labelled samples")
    x_u = as_images(unlabeled, "unlabeled") if unlabeled is not None else None
    if x_u is not None and x_u.shape[1:] != x.shape[1:]:
        raise DataError(f"unlabeled inputs have shape {tuple(x_u.shape[1:])}, labelled ones {tuple(x.shape[1:])}")
    eval_sets = {}
    if eval_data is not None:
        x_e, (y_e, _) = as_images(eval_data[0], "eval x"), encode_labels(eval_data[1], "eval y", classes=names)
        if len(x_e) != len(y_e) or x_e.shape[1:] != x.shape[1:]:
            raise DataError(f"eval_data: {len(x_e)} inputs of shape {tuple(x_e.shape[1:])} and {len(y_e)} labels; "
                            f"the labelled inputs have shape {tuple(x.shape[1:])}")
        eval_sets["test"] = (x_e, y_e)
    width = output_width(model, x) if model is not None and names is None and not num_classes else None
    k, why = infer_num_classes(y, names, num_classes, width, [t for _, t in eval_sets.values()])
    if not num_classes:
        notice(f"{k} classes ({why})")
    check_labels(y, k, f"labeled y ({k} classes, {why})")
    for _, y_e in eval_sets.values():
        check_labels(y_e, k, f"eval y ({k} classes, {why})")
    check_classes_present(y, k, "labeled y", why, names)
    return TrainData(x_l=x, y_l=y, x_u=x_u, num_classes=k, eval_sets=eval_sets, class_names=names, name=name,
                     num_classes_reason=why)


def output_width(model: nn.Module, x: torch.Tensor) -> int | None:
    """The number of logits `model` gives a probe of two samples (None when that fails: training
    then reports the failure with the input shape)."""
    try:
        with evaluation_mode(model), torch.no_grad():
            logits = logits_of(model(x[:2]))
    except Exception:  # the engine's own probe turns this into one clear error
        return None
    return int(logits.shape[1]) if logits is not None and logits.ndim == 2 else None


def select(labeled: tuple[Array, Array] | None = None, unlabeled: Array | None = None, *, dataset: str | None = None,
           model: str = "mlp", methods: list[str] | None = None, budget: str | float = "10m", folds: int = 3,
           out: str | Path = "runs/select", fit: bool = False, eval_data: tuple[Array, Array] | None = None,
           num_classes: int | None = None, seed: int = 0, progress: bool = True, **options: Any) -> Selection:
    """Which method on this data? Labels-only and each candidate on `folds` folds of the labels, the
    same unlabelled pool in every fold, within `budget` (seconds, or '90s', '10m', '1h').

    The data is either arrays (`labeled` = (x, y), `unlabeled`, as `fit` takes them) or a data set
    name (`dataset="csv:table.csv"`, with data options such as `n_labeled=-1`). `options` are config
    keys applied to every candidate (`lr=1e-3`, `model.hidden=[64]`). `eval_data` (a test set) is
    read only by the runs on all labels that `fit=True` trains afterwards. Returns a Selection:
    `.table`, `.recommended`, `.verdict`, `.accuracy` (per method and fold), `.fitted`.
    """
    base = from_kwargs(options, base={"name": "select", "model": {"name": model}, "train": {"seed": seed}})
    if (labeled is None) == (dataset is None):
        raise ConfigError("select needs either labeled=(x, y) arrays or dataset='NAME' (e.g. csv:table.csv)")
    if dataset is not None:
        data, _ = data_from_config(from_kwargs({**options, "data.dataset": dataset}, base=base.to_dict()))
    else:
        data = user_data(labeled, unlabeled, eval_data, num_classes, None, name="select")
    return select_runs(base.to_dict(), data, methods=methods, folds=folds, budget_s=parse_budget(budget), out=Path(out),
                       fit=fit, seed=seed, progress=progress)


def fit_system(system: str | System, images: Array, labels: Array | None = None, *, steps: int = 1000,
               seed: int = 0, num_classes: int | None = None, eval_data: tuple[Array, Array] | None = None,
               modules: dict[str, nn.Module] | None = None, run_dir: str | Path | None = None,
               overwrite: bool = False, **options: Any) -> SystemResult:
    """Train a multi-network system for `steps` rounds of its phases.

    `system` is a registered name (`"disentangle"`, `"began"`) or a `semireg.phases.System` you
    built (your own modules and phases). `modules` replaces a registered system's networks by name,
    e.g. `modules={"enc_s": MyEncoder()}`. `options` are config keys: the system's options
    (`dim_z=8`, `w_adv=20`) and training ones (`batch_size=128`). Returns `.system` (the trained
    networks in `.system.nets`) and `.metrics`.
    """
    x = as_images(images, "images")
    y = as_labels(labels, "labels") if labels is not None else None  # systems say whether they need labels
    if y is not None and len(x) != len(y):
        raise ConfigError(f"{len(x)} images but {len(y)} labels")
    k = num_classes or (int(y.max()) + 1 if y is not None else 1)
    eval_sets = {}
    if eval_data is not None:
        eval_sets["test"] = (as_images(eval_data[0], "eval x"), as_labels(eval_data[1], "eval y"))
    data = TrainData(x_l=x, y_l=y, x_u=None, num_classes=k, eval_sets=eval_sets)
    path = Path(run_dir) if run_dir is not None else None
    if isinstance(system, System):
        if modules:
            raise ConfigError("modules= replaces the networks of a registered system; a System object already holds its own")
        cfg = from_kwargs(options, base={"name": "api", "train": {"steps": steps, "seed": seed, "progress": False}})
        return train_system(cfg, system, data, path, overwrite=overwrite)
    base = {"name": "api", "method": {"name": system}, "train": {"steps": steps, "seed": seed, "progress": False}}
    if not is_system(system):
        raise ConfigError(f"'{system}' is not a multi-network system (known: {', '.join(sorted(SYSTEMS))}); use fit()")
    # The system's own option names win over a config field of the same short name (`hidden`).
    own = {f.name for f in dataclasses.fields(get_system(system).options)}
    cfg = from_kwargs({f"method.{k}" if k in own else k: v for k, v in options.items()}, base=base)
    return train_system_config(cfg, path, data=data, overwrite=overwrite, modules=modules)


__all__ = ["fit", "fit_system", "evaluate", "select"]
