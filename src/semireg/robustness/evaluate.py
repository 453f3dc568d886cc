"""`semireg robustness RUN_DIR`: accuracy of a run's evaluated weights on corrupted test images.

Figures (fractions in robustness.json, percentages in the plots):
- accuracy per corruption and severity;
- `mean_c15`: mean over the 15 corruptions x 5 severities (the standard CIFAR-10-C figure; mean
  corruption error = 1 - mean_c15);
- `mean_c19_s5`: mean over all 19 corruptions at severity 5 (the figure the consistency-training
  post's source repository reports);
- each of them relative to the clean accuracy on the same images.
Generated corrupted images are cached (uint8, keyed by the test images, the seed and the
corruption code version), so every model of a comparison sees exactly the same images.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import rundir
from ..augment import eval_transform
from ..config import resolve
from ..data.arrays import pixels_to_float
from ..data.folders import cache_dir
from ..errors import ConfigError, DataError
from ..evaluation import predict_logits, pyplot
from ..finished import load_finished_model
from ..report.html import build_report
from ..traindata import data_from_config
from .corruptions import CORRUPTIONS, CORRUPTIONS_15, CORRUPTIONS_EXTRA, CORRUPTIONS_VERSION, corrupt


def _subset(n_total: int, n_images: int) -> np.ndarray:
    if n_images < 0 or n_images >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(0).permutation(n_total)[:n_images])


def _cache_root(x: torch.Tensor, seed: int) -> Path:
    digest = hashlib.sha1(np.ascontiguousarray((x.numpy() * 255).round().astype(np.uint8)).tobytes()).hexdigest()[:16]
    return cache_dir() / "corruptions" / f"v{CORRUPTIONS_VERSION}-{len(x)}-{digest}-seed{seed}"


def corrupted_images(x: torch.Tensor, name: str, severity: int, *, seed: int = 0, cache: bool = True) -> torch.Tensor:
    """Generated corruption of x (N, 3, 32, 32), cached as uint8 after the first call."""
    path = _cache_root(x, seed) / f"{name}-{severity}.npy"
    if cache and path.exists():
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False)).float().div_(255.0)
        except (OSError, ValueError):
            pass  # a damaged cache file is regenerated
    out = corrupt(x, name, severity, seed=seed)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of this process's own: two runs evaluated at once (two students of one teacher) generate the
        # same file; with a shared temporary name one's rename found the other's already gone. The rename is
        # atomic, so the last writer wins with identical bytes (the corruption is seeded).
        tmp = path.with_name(f"{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp.npy")
        np.save(tmp, (out * 255).round().to(torch.uint8).numpy())
        tmp.replace(path)
    return out


def released_images(released_dir: Path, name: str, severity: int, index: np.ndarray, y: np.ndarray) -> torch.Tensor:
    """Images from the released CIFAR-10-C files: <name>.npy (50000, 32, 32, 3), severity blocks of 10,000."""
    path = released_dir / f"{name}.npy"
    if not path.exists():
        raise DataError(f"{path}: not found (the released CIFAR-10-C holds one .npy per corruption)")
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if arr.ndim != 4 or arr.shape[0] % 5 or arr.shape[1:] != (32, 32, 3):
        raise DataError(f"{path}: expected (5 * N, 32, 32, 3), got {arr.shape}")
    per = arr.shape[0] // 5
    labels_path = released_dir / "labels.npy"
    if labels_path.exists():
        labels = np.load(labels_path, allow_pickle=False)[(severity - 1) * per + index]
        if not np.array_equal(labels.astype(np.int64), y):
            raise DataError(
                f"{released_dir}: labels do not match this run's test set (the released files follow "
                "the canonical CIFAR-10 test order; the JPEG copy is ordered by class)"
            )
    block = np.asarray(arr[(severity - 1) * per + index])  # (n, 32, 32, 3)
    return torch.from_numpy(block).permute(0, 3, 1, 2).float().div_(255.0)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, view) -> float:
    pred = predict_logits(model, x, batch_size, transform=view).argmax(1).cpu()
    return float((pred == y).float().mean())


def robustness_summary(acc: dict[str, dict[str, float]], clean: float) -> dict[str, Any]:
    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    c15 = [v for name in CORRUPTIONS_15 if name in acc for v in acc[name].values()]
    full15 = all(name in acc and len(acc[name]) == 5 for name in CORRUPTIONS_15)
    s5 = [acc[name]["5"] for name in CORRUPTIONS if name in acc and "5" in acc[name]]
    full19 = all(name in acc and "5" in acc[name] for name in CORRUPTIONS)
    out: dict[str, Any] = {
        "clean": clean,
        "mean_c15": mean(c15) if full15 else None,
        "mean_c19_s5": mean(s5) if full19 else None,
        "mean_all": mean([v for d in acc.values() for v in d.values()]),
    }
    out["mce_c15"] = 1.0 - out["mean_c15"] if out["mean_c15"] is not None else None
    for key in ("mean_c15", "mean_c19_s5", "mean_all"):
        out[f"{key}_relative"] = out[key] / clean if out[key] is not None and clean > 0 else None
    return out


def run_robustness(
    run_dir: Path,
    *,
    cfg=None,
    model: nn.Module | None = None,
    released_dir: str | None = None,
    n_images: int | None = None,
    corruptions: list[str] | None = None,
    severities: list[int] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate a finished run on corrupted test images; writes robustness.json and two PNGs."""

    run_dir = Path(run_dir)
    if cfg is None:
        if not (run_dir / "config.json").exists():
            raise ConfigError(f"{run_dir}: no config.json; not a semireg run directory")
        cfg = resolve(rundir.read_config(run_dir))
    r = cfg.robustness
    released = released_dir if released_dir is not None else r.released_dir
    n_images = r.n_images if n_images is None else n_images
    names = corruptions or r.corruptions or list(CORRUPTIONS)
    unknown = [c for c in names if c not in CORRUPTIONS]
    if unknown:
        raise ConfigError(f"unknown corruption(s) {', '.join(unknown)} (known: {', '.join(CORRUPTIONS)})")
    severities = severities or r.severities
    data, _ = data_from_config(cfg)
    x_test, y_test = data.eval_sets["test"]
    if tuple(x_test.shape[1:]) != (3, 32, 32):
        raise ConfigError(
            f"the CIFAR-10-C corruptions take 32x32 colour images; this run's are {tuple(x_test.shape[1:])}"
        )
    if model is None:
        model, _, _ = load_finished_model(run_dir, data)
    device = next(model.parameters()).device
    view = eval_transform(cfg.augment)
    index = _subset(len(x_test), n_images)
    x, y = pixels_to_float(x_test[torch.from_numpy(index)]), y_test[torch.from_numpy(index)]
    start = time.perf_counter()
    clean = _accuracy(model, x, y, r.batch_size, view)
    acc: dict[str, dict[str, float]] = {}
    for name in names:
        acc[name] = {}
        for s in severities:
            xc = (
                released_images(Path(released), name, s, index, y.numpy())
                if released
                else corrupted_images(x.to(device), name, s, seed=r.seed).cpu()
            )
            acc[name][str(s)] = _accuracy(model, xc, y, r.batch_size, view)
        if progress:
            print(f"  {name:18s} " + " ".join(f"{acc[name][str(s)]:.3f}" for s in severities), flush=True)
    result = {
        "source": f"released:{released}"
        if released
        else f"generated (CIFAR-10-C constants, corruption code v{CORRUPTIONS_VERSION}, seed {r.seed})",
        "data": data.name,
        "n_images": len(index),
        "severities": severities,
        "accuracy": acc,
        "summary": robustness_summary(acc, clean),
        "time_s": round(time.perf_counter() - start, 1),
        "extra_corruptions": list(CORRUPTIONS_EXTRA),
    }
    with rundir.writer_lock(run_dir):
        rundir.write_json(run_dir / "robustness.json", result)
        plot_robustness(result, run_dir, title=cfg.name)
        build_report(run_dir, data)
    return result


def plot_robustness(result: dict[str, Any], run_dir: Path, title: str = "") -> None:
    plt = pyplot()
    acc, sev = result["accuracy"], [str(s) for s in result["severities"]]
    names = list(acc)
    grid = np.array([[acc[n].get(s, np.nan) * 100 for s in sev] for n in names])
    clean = result["summary"]["clean"] * 100
    fig, ax = plt.subplots(figsize=(5.2, 0.32 * len(names) + 1.6))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i in range(len(names)):
        for j in range(len(sev)):
            ax.text(
                j,
                i,
                f"{grid[i, j]:.0f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if grid[i, j] < 60 else "black",
            )
    ax.set_xticks(range(len(sev)), [f"sev {s}" for s in sev])
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_title(f"{title}\naccuracy (%) under corruption; clean {clean:.1f}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    fig.savefig(run_dir / "robustness_heatmap.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.6))
    means = np.nanmean(grid, axis=1)
    ax.bar(range(len(names)), means, color=["C0" if n in CORRUPTIONS_15 else "C1" for n in names])
    ax.axhline(clean, color="k", ls="--", lw=1, label=f"clean {clean:.1f}")
    s = result["summary"]
    if s.get("mean_c15") is not None:
        ax.axhline(s["mean_c15"] * 100, color="C0", ls=":", lw=1, label=f"mean 15x5 {s['mean_c15'] * 100:.1f}")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%), mean over severities")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(run_dir / "robustness_bars.png", dpi=100)
    plt.close(fig)
