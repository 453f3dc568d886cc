"""Weights out of a run, and predictions on new files.

    export_run(run_dir) -> model.safetensors   the weights the run evaluated (SWA > EMA > model)
                                               plus what rebuilding the model takes, as metadata
    load_exported(path) -> (model, info)       no pickle anywhere: safetensors + JSON metadata
    predict_files(source, files) -> rows       images (PNG/JPEG/...) or .npz arrays, through the
                                               same eval view the run's test images took

A multi-network system (began, disentangle) exports every network's weights under its name
(`D.encoder.0.weight`, ...); prediction is for classifier runs.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from . import rundir
from .augment import AugmentConfig, eval_transform
from .config import kind_entry, resolve
from .data.arrays import as_images
from .data.folders import fit_image
from .data.tabular import read_features
from .errors import ConfigError, DataError, RunDirError, mismatch
from .evaluation import predict_logits
from .finished import evaluated_weights, module_with_weights

FORMAT = "semireg-model/1"
EXPORT_NAME = "model.safetensors"


def _run_files(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    for name in ("config.json", rundir.CHECKPOINT):
        if not (run_dir / name).exists():
            raise RunDirError(f"{run_dir}: no {name}; not a finished semireg run")
    config = rundir.read_config(run_dir)
    meta = json.loads((run_dir / "meta.json").read_text()) if (run_dir / "meta.json").exists() else {}
    return config, meta, rundir.load_checkpoint(run_dir / rundir.CHECKPOINT)


def export_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the run's evaluated weights to safetensors (default run_dir/model.safetensors)."""

    run_dir = Path(run_dir)
    config, meta, state = _run_files(run_dir)
    cfg = resolve(config)  # a config this version cannot read is refused before anything is written
    data = meta.get("data", {})
    if not kind_entry(cfg.method["name"]).classifier:
        tensors = dict(state["nets"])  # one ModuleDict's state: keys already carry the network's name
        kind = "system"
    else:
        tensors, kind = evaluated_weights(state)
        _build(cfg, data, tensors, f"{run_dir}")  # only weights that load into the model they name
    metadata = {
        "format": FORMAT,
        "config": json.dumps(config),
        "evaluated_weights": kind,
        "step": str(int(state["step"])),
        "in_shape": json.dumps(data.get("in_shape")),
        "num_classes": str(data.get("num_classes", "")),
        "class_names": json.dumps(data.get("class_names")),
        "code": json.dumps(meta.get("code", {})),
        "feature_stats": json.dumps(data.get("feature_stats")),
    }
    out = Path(out) if out is not None else run_dir / EXPORT_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    # Writing into the run directory is writing the run: not while another process trains it.
    with rundir.writer_lock(run_dir) if out.resolve().parent == run_dir.resolve() else contextlib.nullcontext():
        tmp = out.with_name(out.name + ".tmp")
        # safetensors wants contiguous tensors that share no memory
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        tmp.replace(out)
    return out


def load_exported(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """(eval-mode model, info) from an exported file; info holds config, in_shape, class_names, ..."""

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunDirError(f"{path}: not a readable safetensors file ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise RunDirError(f"{path}: not a semireg export (format {metadata.get('format')!r}, expected {FORMAT!r})")
    info = {k: json.loads(metadata[k]) for k in ("config", "in_shape", "class_names", "code")}
    info["feature_stats"] = json.loads(metadata.get("feature_stats", "null"))  # exports before CSV input had none
    info.update(
        num_classes=int(metadata["num_classes"]),
        evaluated_weights=metadata["evaluated_weights"],
        step=int(metadata["step"]),
    )
    cfg = resolve(info["config"])
    if not kind_entry(cfg.method["name"]).classifier:
        raise ConfigError(
            f"{path}: a '{cfg.method['name']}' system export holds several networks; "
            "load its tensors with safetensors.torch.load_file"
        )
    return _build(cfg, info, weights, str(path)), info


def _model_for(source: Path) -> tuple[nn.Module, dict[str, Any]]:
    """A run directory (its checkpoint) or an exported .safetensors file."""
    if source.is_file():
        return load_exported(source)

    config, meta, state = _run_files(source)
    cfg = resolve(config)
    if not kind_entry(cfg.method["name"]).classifier:
        raise ConfigError(f"{source}: predict is for classifier runs, not the '{cfg.method['name']}' system")
    data = meta.get("data", {})
    weights, kind = evaluated_weights(state)
    model = _build(cfg, data, weights, str(source))
    return model, {
        "config": config,
        "in_shape": data["in_shape"],
        "num_classes": data["num_classes"],
        "class_names": data.get("class_names"),
        "evaluated_weights": kind,
        "feature_stats": data.get("feature_stats"),
    }


def _build(cfg, shapes: dict[str, Any], weights: dict[str, torch.Tensor], where: str) -> nn.Module:
    """The run's model with `weights` (eval mode); shapes holds in_shape and num_classes."""

    if not shapes.get("in_shape") or not shapes.get("num_classes"):
        raise RunDirError(f"{where}: the input shape and class count are not recorded")
    try:
        model = module_with_weights(cfg, tuple(shapes["in_shape"]), int(shapes["num_classes"]), weights)
    except (RuntimeError, KeyError) as exc:
        raise RunDirError(f"{where}: checkpoint of another model ({mismatch(exc)})") from None
    return model.eval()


def read_inputs(path: Path, in_shape: tuple[int, ...], feature_stats: dict[str, Any] | None = None) -> torch.Tensor:
    """Inputs from one file, as the model takes them: (N, *in_shape).
    An image file is converted to the run's channels and brought to its size as the training folders were (shorter side scaled, centre cropped); an .npz holds
    one array (or 'x'): uint8 pixels or floats already scaled like the training data; a .csv
    holds rows with the training CSV's feature columns (by name; others are ignored), scaled with
    the training file's statistics when the run standardised them."""

    if path.suffix.lower() == ".csv":
        if not feature_stats:
            raise DataError(f"{path}: this run was not trained on a CSV; pass an .npz of its inputs")
        x = read_features(path, feature_stats["columns"])  # (N, D)
        return (x - torch.tensor(feature_stats["mean"])) / torch.tensor(feature_stats["std"])

    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                names = list(f.files)
                key = "x" if "x" in names else names[0] if len(names) == 1 else None
                if key is None:
                    raise DataError(f"{path}: several arrays ({', '.join(names)}) and none named 'x'")
                arr = f[key]
        except DataError:
            raise
        except Exception as exc:  # zip/format errors of every kind: one clear message
            raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
        if arr.ndim == len(in_shape) and tuple(arr.shape) == tuple(in_shape):
            arr = arr[None]  # a single example
        x = as_images(arr, str(path))
    else:
        if len(in_shape) != 3:
            raise DataError(f"{path}: this model takes vectors of shape {tuple(in_shape)}; pass an .npz")
        c, h, w = in_shape
        try:
            with Image.open(path) as img:
                arr = fit_image(img, (h, w), "L" if c == 1 else "RGB")  # the training folders' policy
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{path}: cannot read image ({exc})") from None
        x = torch.from_numpy(arr.copy()).float().div_(255.0)
        x = x.unsqueeze(0).unsqueeze(0) if c == 1 else x.permute(2, 0, 1).unsqueeze(0)
    if tuple(x.shape[1:]) != tuple(in_shape):
        raise DataError(f"{path}: inputs of shape {tuple(x.shape[1:])}, the model takes {tuple(in_shape)}")
    return x


def predict_files(source: str | Path, files: list[str | Path], top: int = 1) -> list[dict[str, Any]]:
    """One row per input: file, index within it, predicted class (index and name), probabilities of the top k."""

    model, info = _model_for(Path(source))
    in_shape = tuple(info["in_shape"])
    names = info.get("class_names") or [str(i) for i in range(info["num_classes"])]
    view = eval_transform(AugmentConfig(**info["config"].get("augment", {})))
    rows = []
    for file in map(Path, files):
        x = read_inputs(file, in_shape, info.get("feature_stats"))  # (N, *in_shape)
        probs = predict_logits(model, x, transform=view).softmax(1)  # (N, K)
        p, k = probs.topk(min(top, probs.shape[1]), dim=1)
        for i in range(len(x)):
            rows.append(
                {
                    "file": str(file),
                    "index": i,
                    "class": int(k[i, 0]),
                    "name": names[int(k[i, 0])],
                    "probability": float(p[i, 0]),
                    "top": [
                        {"class": int(c), "name": names[int(c)], "probability": float(q)} for c, q in zip(k[i], p[i])
                    ],
                }
            )
    return rows
