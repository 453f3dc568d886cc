"""The data a training loop draws from, as tensors in memory, and the checks made on it before a
run directory is touched."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .config import RunConfig
from .data import Split, load_dataset, make_split, official_test_subset
from .data.arrays import pixels_to_float
from .errors import ConfigError


@dataclass
class TrainData:
    """Everything the loop draws from, as tensors. x: (N, C, H, W) images, uint8 pixels (floats made
    per batch where they are used: `pixels_to_float`) or float32; or (N, D) float32 vectors."""

    x_l: torch.Tensor
    y_l: torch.Tensor  # (N,); None only for a label-free system trained without labels (fit_system)
    x_u: torch.Tensor | None
    num_classes: int
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    class_names: list[str] | None = None
    name: str = ""  # the data set's name (e.g. cifar10-jpeg), recorded in meta.json
    num_classes_reason: str = ""  # how num_classes was inferred, for error messages
    feature_stats: dict[str, list[float]] | None = None  # mean/std that standardised vector inputs (a CSV)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_l.shape[1:])

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in_shape": list(self.in_shape),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "labeled": len(self.x_l),
            **({"feature_stats": self.feature_stats} if self.feature_stats else {}),
            "unlabeled": 0 if self.x_u is None else len(self.x_u),
            **{f"eval_{k}": len(v[1]) for k, v in self.eval_sets.items()},
        }

    def as_float(self) -> TrainData:
        """The same data with images as float32 in [0, 1] (for consumers that use whole arrays: the
        multi-network systems' probes, the classical fits); float data comes back as it is."""
        if self.x_l.dtype != torch.uint8:
            return self
        x_u = pixels_to_float(self.x_u) if self.x_u is not None else None
        evals = {k: (pixels_to_float(x), y) for k, (x, y) in self.eval_sets.items()}
        return dataclasses.replace(self, x_l=pixels_to_float(self.x_l), x_u=x_u, eval_sets=evals)

    def fingerprint(self) -> dict[str, str]:
        """A hash of each part of the data a run trains and is judged on: the inputs' bytes after every
        preprocessing step (scaling, resizing, standardising), in their order (which the split fixes),
        and the labels with the class names. Equal fingerprints: the same rows, the same order."""
        labels = [self.y_l] if self.y_l is not None else []
        out = {
            "labeled": digest(self.x_l, *labels, extra=repr((self.class_names, self.num_classes))),
            "unlabeled": digest(self.x_u) if self.x_u is not None else "none",
        }
        out.update({f"eval_{name}": digest(x, y) for name, (x, y) in sorted(self.eval_sets.items())})
        return out


def digest(*tensors: torch.Tensor, extra: str = "") -> str:
    """16 hex digits of BLAKE2b over the tensors' shapes, dtypes and bytes (no copy of a contiguous
    CPU tensor: CIFAR-10's 50,000 float32 images hash in about a second)."""
    h = hashlib.blake2b(digest_size=8)
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(repr((tuple(t.shape), str(t.dtype))).encode())
        view = t.view(torch.uint8) if t.dtype == torch.bfloat16 else t  # numpy has no bfloat16
        h.update(memoryview(np.ascontiguousarray(view.numpy())).cast("B"))
    h.update(extra.encode())
    return h.hexdigest()


def fingerprint_differences(saved: dict[str, str], now: dict[str, str]) -> list[str]:
    """The parts of the data (labeled, unlabeled, eval_test, ...) whose hashes differ or are missing on one side."""
    return sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))


def data_from_config(cfg: RunConfig) -> tuple[TrainData, Split]:
    d = cfg.data
    ds = load_dataset(
        d.dataset,
        d.data_dir,
        d.download,
        label_column=d.label_column,
        drop_columns=tuple(d.drop_columns),
        standardize=d.standardize,
        unlabeled=d.unlabeled,
        image_size=d.image_size,
        skip_unreadable=d.skip_unreadable,
    )
    split = make_split(
        ds.y_train.numpy(),
        ds.num_classes,
        protocol=d.protocol,
        n_labeled=d.n_labeled,
        n_unlabeled=d.n_unlabeled,
        n_val=d.n_val,
        n_test=d.n_test,
        balanced=d.balanced,
        has_test_set=ds.x_test is not None,
        seed=cfg.train.seed if d.split_seed < 0 else d.split_seed,
    )
    take = lambda idx: torch.from_numpy(idx)
    eval_sets = {}
    if split.test is not None:
        eval_sets["test"] = (ds.x_train[take(split.test)], ds.y_train[take(split.test)])
    elif ds.x_test is not None:
        subset = official_test_subset(len(ds.y_test), d.n_test)
        keep = slice(None) if subset is None else take(subset)
        eval_sets["test"] = (ds.x_test[keep], ds.y_test[keep])
    if len(split.val):
        eval_sets["val"] = (ds.x_train[take(split.val)], ds.y_train[take(split.val)])
    # The unlabelled set: training samples not drawn as labelled, then the data's own pile without labels.
    pools = [ds.x_train[take(split.unlabeled)]] if len(split.unlabeled) else []
    if ds.x_unlabeled is not None and len(ds.x_unlabeled):
        pools.append(ds.x_unlabeled)
    data = TrainData(
        x_l=ds.x_train[take(split.labeled)],
        y_l=ds.y_train[take(split.labeled)],
        x_u=torch.cat(pools) if pools else None,
        num_classes=ds.num_classes,
        eval_sets=eval_sets,
        class_names=ds.class_names,
        name=ds.name,
        feature_stats=ds.feature_stats,
    )
    return data, split


def check_method_inputs(cfg: RunConfig, data: TrainData, spec: Any, opts: Any) -> None:
    """What a single-model method needs of the data and the config, as one clear error each."""
    t = cfg.train
    if spec.uses_unlabeled(opts) and (data.x_u is None or len(data.x_u) == 0):
        raise ConfigError(f"method '{spec.name}' needs unlabelled images, but the unlabelled set is empty")
    if len(data.y_l) and (int(data.y_l.min()) < 0 or int(data.y_l.max()) >= data.num_classes):
        raise ConfigError(f"labels must lie in [0, {data.num_classes})")
    if spec.needs_teacher and not cfg.teacher:
        raise ConfigError(f"method '{spec.name}' needs a teacher: set teacher=RUN_DIR (a finished run)")
    if spec.needs_ema and t.ema_decay <= 0:
        raise ConfigError(
            f"method '{spec.name}' learns from an EMA of its weights: set train.ema_decay > 0 (e.g. 0.999)"
        )
    if (t.plateau_patience or t.early_stop_patience) and "val" not in data.eval_sets:
        raise ConfigError("train.plateau_patience / train.early_stop_patience need a validation split (data.n_val > 0)")
