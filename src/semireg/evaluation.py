"""Predictions and classification metrics; JSON and PNG outputs in the run directory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data.arrays import as_images, as_labels, pixels_to_float
from .rundir import read_jsonl


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode (dropout off, BatchNorm on running statistics) inside the block; its training flag
    is restored afterwards, also when the block raises. Gradients are not switched off: callers that need
    no graph say so with `torch.no_grad()`."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1000, transform=None) -> torch.Tensor:
    """Logits (N, K) in eval mode; the model's training flag is restored afterwards.

    `transform` maps a batch on the model's device to the model's input view (e.g. a resize).
    """
    device = next((p.device for p in model.parameters()), x.device)
    view = transform or (lambda t: t)
    with evaluation_mode(model):
        batches = (pixels_to_float(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size))
        out = [model(view(b)).float() for b in batches]
    return torch.cat(out)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (rows true,
    columns predicted), as scikit-learn's metrics with `labels=range(num_classes)` and
    `zero_division=0` give them (a test checks that), in numpy: importing sklearn.metrics costs
    about 2 s of every command's start-up."""
    y_true, y_pred = np.asarray(y_true).astype(np.int64).ravel(), np.asarray(y_pred).astype(np.int64).ravel()
    k = num_classes
    inside = (y_true >= 0) & (y_true < k) & (y_pred >= 0) & (y_pred < k)
    confusion = np.bincount(k * y_true[inside] + y_pred[inside], minlength=k * k).reshape(k, k)  # (K, K)
    true_pos = np.diag(confusion).astype(np.float64)
    # A class's support counts every sample of that class, its predicted count every prediction of it.
    support = np.bincount(y_true[(y_true >= 0) & (y_true < k)], minlength=k)
    predicted = np.bincount(y_pred[(y_pred >= 0) & (y_pred < k)], minlength=k)
    precision = np.divide(true_pos, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * true_pos, predicted + support, out=np.zeros(k), where=predicted + support > 0)
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(f1.mean()),
        "per_class": {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": support.tolist(),
        },
        "confusion": confusion.tolist(),
    }


def evaluate(
    model: nn.Module, data: tuple[Any, Any], num_classes: int | None = None, batch_size: int = 1000
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix of `model` on (x, y)."""
    x, y = as_images(data[0]), as_labels(data[1])
    logits = predict_logits(model, x, batch_size)
    k = num_classes or logits.shape[1]
    return classification_metrics(y.numpy(), logits.argmax(1).cpu().numpy(), k)


def summary(metrics: dict[str, Any]) -> dict[str, float]:
    out = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
    if "loss" in metrics:
        out["loss"] = metrics["loss"]
    return out


# ----------------------------------------------------------------------------- plots


def pyplot():
    """matplotlib.pyplot on the Agg backend. Imported here, at first use: importing matplotlib costs
    about half a second, which a run without plots (or `semireg --help`) should not pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(
    confusion: list[list[int]], path: Path, class_names: list[str] | None = None, title: str = "confusion matrix"
) -> None:
    plt = pyplot()
    cm = np.asarray(confusion)
    k = len(cm)
    names = class_names or [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * k, 1.0 + 0.5 * k))
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if cm[i, j] > cm.max() / 2 else "black",
            )
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curves(metrics_path: Path, path: Path) -> None:
    """Training loss terms and evaluation accuracy / macro-F1 against the step."""
    plt = pyplot()
    records = read_jsonl(metrics_path)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    terms = sorted({k for r in train for k in r if k not in ("kind", "step", "lr", "time", "epoch", "train_acc")})
    for term in terms:
        steps = [r["step"] for r in train if term in r]
        ax_loss.plot(steps, [r[term] for r in train if term in r], label=term)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss terms")
    ax_loss.set_yscale("log")
    if terms:
        ax_loss.legend(fontsize=8)
    if train:
        ax_acc.plot(
            [r["step"] for r in train], [r.get("train_acc", np.nan) for r in train], label="train batch acc", alpha=0.6
        )
    for key in ("accuracy", "macro_f1"):
        pts = [(r["step"], r[key]) for r in evals if key in r]
        if pts:
            ax_acc.plot(*zip(*pts), marker="o", ms=3, label=f"eval {key}")
    ax_acc.set_xlabel("step")
    ax_acc.set_ylim(0, 1.01)
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
