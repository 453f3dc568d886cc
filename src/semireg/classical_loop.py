"""A classical method's run: one fit on all rows, then the same run directory a step method writes
(config.json, meta.json, split.npz, metrics.jsonl, checkpoint.pt with the fitted module, results.json,
report.html), through the run lifecycle both loops share (`runs`). There are no steps to resume:
`resume` fits again, which gives the same module (the fits draw no random numbers)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import runs
from .classical import get_classical
from .config import RunConfig, method_options
from .data import Split
from .evaluation import classification_metrics, predict_logits
from .traindata import TrainData, data_from_config


def train_classical(
    cfg: RunConfig,
    run_dir: Path | None,
    *,
    data: TrainData | None = None,
    split: Split | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """(the fitted module in eval mode, the run's final metrics)."""
    spec, opts = get_classical(cfg.method["name"]), method_options(cfg)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if data is None:
        data, split = data_from_config(cfg)
    data = data.as_float()  # pixels in [0, 1], as the neural methods see them
    meta = {"data": data.summary(), "fingerprint": data.fingerprint(), "total_steps": 0, "evaluated_weights": "model"}
    if resume and run_dir is not None:  # a fit is not continued, but never silently redone on other data
        runs.check_same_data(run_dir, meta["fingerprint"], "resume")
    run, _ = runs.open_run(cfg, run_dir, total=0, resume=False, overwrite=overwrite or resume, meta=meta, split=split)
    try:
        start = time.perf_counter()
        model = spec.fit(data.x_l, data.y_l, data.x_u, data.num_classes, opts)
        run.elapsed = time.perf_counter() - start
        final: dict[str, Any] = {"steps": 0, "train_time_s": round(run.elapsed, 3), "evaluated_weights": "model"}
        for name, (x, y) in data.eval_sets.items():
            pred = predict_logits(model, x).argmax(1).cpu().numpy()
            final[name] = classification_metrics(y.numpy(), pred, data.num_classes)
            run.eval_record(0, final[name], split=name)
        if data.class_names:
            final["class_names"] = data.class_names
        state = {"final": model.state_dict(), "final_kind": "model"}
        run.save(0, lambda: state, [t for t in state["final"].values() if t.is_floating_point()])
        run.finish(final, data, lambda metrics, png: None)  # one fit: no curves to draw
        return model, final
    finally:
        run.close()
