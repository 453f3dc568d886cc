"""The Python API: `fit`, `fit_system`, `select`, `evaluate`, and the registries' names.

Every entry point takes data the same ways: a labelled pair `(x, y)` plus unlabelled inputs; one
set of inputs whose unlabelled rows are marked `y == -1` (scikit-learn's convention; `None` or NaN
for labels of other types); or a map-style `torch.utils.data.Dataset` of `(x, y)` pairs, `y = -1`
when unlabelled."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .classical import CLASSICAL
from .config import from_kwargs
from .data.arrays import as_images, check_classes_present, check_labels, encode_labels, infer_num_classes, notice
from .data.partial import UNLABELED, as_label_array, is_map_dataset, pairs_of_dataset, split_rows, unlabeled_mask
from .engine import Result, train
from .errors import ConfigError, DataError
from .evaluation import evaluate, evaluation_mode
from .methods import METHODS
from .models import MODELS, logits_of
from .phase_loop import SystemResult, train_system, train_system_config
from .phases import System
from .selection import Selection, parse_budget, select_runs
from .systems import SYSTEMS, get_system
from .traindata import TrainData, data_from_config

Array = np.ndarray | torch.Tensor
Data = tuple[Array, Array] | torch.utils.data.Dataset


def list_methods() -> list[str]:
    """The registered single-model methods (`fit(..., method=NAME)`)."""
    return sorted(METHODS)


def list_models() -> list[str]:
    """The registered models (`fit("NAME", ...)`)."""
    return sorted(MODELS)


def list_classical() -> list[str]:
    """The registered classical methods (`fit("mlp", ..., method=NAME)`: fitted on all rows at once)."""
    return sorted(CLASSICAL)


def list_systems() -> list[str]:
    """The registered multi-network systems (`fit_system("NAME", ...)`)."""
    return sorted(SYSTEMS)


def partition(
    data: Data, unlabeled: Array | None = None, what: str = "data", marker: Any = UNLABELED
) -> tuple[Any, np.ndarray, torch.Tensor | None]:
    """(labelled inputs, their labels, unlabelled inputs or None) from any of the ways data comes in:
    `(x, y)` with unlabelled rows marked in y, a Dataset of `(x, y)` pairs, plus `unlabeled` inputs."""
    if is_map_dataset(data):
        x, y = pairs_of_dataset(data, what)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise DataError(
            f"{what}: expected (x, y) with y = {marker!r} for unlabelled rows, or a Dataset of (x, y) "
            f"pairs; got {type(data).__name__}"
        )
    if not hasattr(x, "__len__") or not hasattr(x, "shape") and not isinstance(x, (list, tuple)):
        raise DataError(f"{what}: x must be an array or tensor of inputs; got {type(x).__name__}")
    x_l, y_l, x_u = split_rows(x if hasattr(x, "shape") else np.asarray(x), y, marker, f"{what} y")
    if unlabeled is not None:
        extra = as_images(unlabeled, "unlabeled")
        x_u = extra if x_u is None else torch.cat([as_images(x_u, f"{what} x (unlabelled rows)"), extra])
    return x_l, y_l, x_u


def fit(
    model: nn.Module | str,
    data: Data,
    unlabeled: Array | None = None,
    *,
    method: str = "supervised",
    steps: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    eval_data: tuple[Array, Array] | None = None,
    run_dir: str | Path | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Result:
    """Train `model` on `data` = (x, y) (rows with y == -1 are unlabelled) or a Dataset of (x, y)
    pairs, and, for semi-supervised methods, on `unlabeled` = x_u as well.

    x and x_u are arrays or tensors shaped (N, C, H, W), (N, H, W, C) or (N, D); uint8 is scaled to
    [0, 1]. Labels are class indices 0..K-1 or any other hashable values (strings, ...), which
    become classes by name (`result.metrics["class_names"]`, and the run's report and predictions).
    `options` are any config keys, short or dotted: method options (`eps=2.0`, `xi=1.0`),
    training options (`lr=1e-3`, `batch_size=64`) or `model.dropout=0.5`. `model` is an
    `nn.Module` mapping a batch to logits, or the name of a registered model.
    Returns a Result with `.model` (the trained module, the EMA copy when `ema_decay > 0`),
    `.metrics` (steps, train time and, with `eval_data`, test metrics), `.predict(x)` and
    `.predict_proba(x)`.
    """
    x_l, y_l, x_u = partition(data, unlabeled)
    data = user_data((x_l, y_l), x_u, eval_data, num_classes, model if isinstance(model, nn.Module) else None)
    base: dict[str, Any] = {
        "name": "api",
        "method": {"name": method},
        "train": {"steps": steps, "seed": seed, "progress": False},
    }
    if isinstance(model, str):
        base["model"] = {"name": model}
    cfg = from_kwargs(options, base=base)
    module = None if isinstance(model, str) else model
    return train(cfg, Path(run_dir) if run_dir is not None else None, model=module, data=data, overwrite=overwrite)


def user_data(
    labeled: tuple[Array, Array],
    unlabeled: Array | None,
    eval_data: tuple[Array, Array] | None,
    num_classes: int | None,
    model: nn.Module | None,
    name: str = "api",
) -> TrainData:
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
            raise DataError(
                f"eval_data: {len(x_e)} inputs of shape {tuple(x_e.shape[1:])} and {len(y_e)} labels; "
                f"the labelled inputs have shape {tuple(x.shape[1:])}"
            )
        eval_sets["test"] = (x_e, y_e)
    width = output_width(model, x) if model is not None and names is None and not num_classes else None
    k, why = infer_num_classes(y, names, num_classes, width, [t for _, t in eval_sets.values()])
    if not num_classes:
        notice(f"{k} classes ({why})")
    check_labels(y, k, f"labeled y ({k} classes, {why})")
    for _, y_e in eval_sets.values():
        check_labels(y_e, k, f"eval y ({k} classes, {why})")
    check_classes_present(y, k, "labeled y", why, names)
    return TrainData(
        x_l=x, y_l=y, x_u=x_u, num_classes=k, eval_sets=eval_sets, class_names=names, name=name, num_classes_reason=why
    )


def output_width(model: nn.Module, x: torch.Tensor) -> int | None:
    """The number of logits `model` gives a probe of two samples (None when that fails: training
    then reports the failure with the input shape)."""
    try:
        with evaluation_mode(model), torch.no_grad():
            logits = logits_of(model(x[:2]))
    except Exception:  # the engine's own probe turns this into one clear error
        return None
    return int(logits.shape[1]) if logits is not None and logits.ndim == 2 else None


def select(
    data: Data | None = None,
    unlabeled: Array | None = None,
    *,
    dataset: str | None = None,
    model: str = "mlp",
    methods: list[str] | None = None,
    budget: str | float = "10m",
    folds: int = 3,
    out: str | Path | None = "runs/select",
    fit: bool = False,
    eval_data: tuple[Array, Array] | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    progress: bool = True,
    reference: str = "supervised",
    **options: Any,
) -> Selection:
    """Which method on this data? Labels-only and each candidate on `folds` folds of the labels, the
    same unlabelled pool in every fold, within `budget` (seconds, or '90s', '10m', '1h').

    The data is either arrays (`data` = (x, y), `unlabeled`, as `fit` takes them) or a data set
    name (`dataset="csv:table.csv"`, with data options such as `n_labeled=-1`). `options` are config
    keys applied to every candidate (`lr=1e-3`, `model.hidden=[64]`). `eval_data` (a test set) is
    read only by the runs on all labels that `fit=True` trains afterwards. `reference` is recommended
    unless another candidate beats it beyond noise (labels only by default). Returns a Selection:
    `.table`, `.recommended`, `.verdict`, `.accuracy` (per method and fold), `.fitted`.
    """
    base = from_kwargs(options, base={"name": "select", "model": {"name": model}, "train": {"seed": seed}})
    if (data is None) == (dataset is None):
        raise ConfigError("select needs either data=(x, y) (y == -1 unlabelled) or dataset='NAME' (e.g. csv:table.csv)")
    if dataset is not None:
        train_data, _ = data_from_config(from_kwargs({**options, "data.dataset": dataset}, base=base.to_dict()))
    else:
        x_l, y_l, x_u = partition(data, unlabeled)
        train_data = user_data((x_l, y_l), x_u, eval_data, num_classes, None, name="select")
    return select_runs(
        base.to_dict(),
        train_data,
        methods=methods,
        folds=folds,
        budget_s=parse_budget(budget),
        out=Path(out) if out is not None else None,
        fit=fit,
        seed=seed,
        progress=progress,
        reference=reference,
    )


def fit_system(
    system: str | System,
    data: Data | Array,
    *,
    unlabeled: Array | None = None,
    steps: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    eval_data: tuple[Array, Array] | None = None,
    modules: dict[str, nn.Module] | None = None,
    run_dir: str | Path | None = None,
    overwrite: bool = False,
    **options: Any,
) -> SystemResult:
    """Train a multi-network system for `steps` rounds of its phases, on `data`: images alone (for a
    system that needs no labels), `(x, y)` or a Dataset of `(x, y)` pairs, as `fit` takes them.
    The systems learn from every image they train on, so unlabelled rows (y == -1, `unlabeled`) are
    refused with the first one named, rather than accepted and left out.

    `system` is a registered name (`"disentangle"`, `"began"`) or a `semireg.phases.System` you
    built (your own modules and phases). `modules` replaces a registered system's networks by name,
    e.g. `modules={"enc_s": MyEncoder()}`. `options` are config keys: the system's options
    (`dim_z=8`, `w_adv=20`) and training ones (`batch_size=128`). Returns `.system` (the trained
    networks in `.system.nets`) and `.metrics`.
    """
    x, y, k, eval_sets = system_data(data, unlabeled, num_classes, eval_data)
    data = TrainData(x_l=x, y_l=y, x_u=None, num_classes=k, eval_sets=eval_sets)
    path = Path(run_dir) if run_dir is not None else None
    if isinstance(system, System):
        if modules:
            raise ConfigError(
                "modules= replaces the networks of a registered system; a System object already holds its own"
            )
        cfg = from_kwargs(options, base={"name": "api", "train": {"steps": steps, "seed": seed, "progress": False}})
        return train_system(cfg, system, data, path, overwrite=overwrite)
    base = {"name": "api", "method": {"name": system}, "train": {"steps": steps, "seed": seed, "progress": False}}
    if system not in SYSTEMS:
        raise ConfigError(f"'{system}' is not a multi-network system (known: {', '.join(sorted(SYSTEMS))}); use fit()")
    # The system's own option names win over a config field of the same short name (`hidden`).
    own = {f.name for f in dataclasses.fields(get_system(system).options)}
    cfg = from_kwargs({f"method.{k}" if k in own else k: v for k, v in options.items()}, base=base)
    return train_system_config(cfg, path, data=data, overwrite=overwrite, modules=modules)


def system_data(
    data: Data | Array, unlabeled: Array | None, num_classes: int | None, eval_data: tuple[Array, Array] | None
) -> tuple[torch.Tensor, torch.Tensor | None, int, dict]:
    """Images, labels (None for images alone), class count and evaluation sets of a system's data."""
    if unlabeled is not None:
        raise DataError(
            "unlabeled: the multi-network systems train on every image they are given; pass the images "
            "in data (alone, for a system that needs no labels)"
        )
    if is_map_dataset(data) or isinstance(data, (tuple, list)):
        x_l, y_l, x_u = partition(data, None)
        if x_u is not None:
            rows = np.flatnonzero(partition_mask(data))
            raise DataError(
                f"data y: row {int(rows[0])} is unlabelled ({len(rows)} such rows); the multi-network "
                "systems learn from labelled images or from images alone (pass x without y)"
            )
        x, (y, names) = as_images(x_l, "images"), encode_labels(y_l, "labels")
    else:
        x, y, names = as_images(data, "images"), None, None
    k = num_classes or (len(names) if names else int(y.max()) + 1 if y is not None else 1)
    eval_sets = {}
    if eval_data is not None:
        eval_sets["test"] = (as_images(eval_data[0], "eval x"), encode_labels(eval_data[1], "eval y", classes=names)[0])
    return x, y, k, eval_sets


def partition_mask(data: Data) -> np.ndarray:
    """(N,) bool: the unlabelled rows of `(x, y)` or of a Dataset of pairs."""
    y = pairs_of_dataset(data)[1] if is_map_dataset(data) else as_label_array(data[1])
    return unlabeled_mask(y)


__all__ = ["fit", "fit_system", "evaluate", "list_methods", "list_models", "list_systems", "partition", "select"]
