"""What the systems are judged with: fresh probes on frozen codes, an independent judge classifier,
and pictures (image grids, t-SNE)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..evaluation import pyplot


@torch.no_grad()
def batched(fn, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """fn over x in chunks, concatenated: (N, ...) -> (N, ...)."""
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def _two_hidden_mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """The probes' and the fresh decoders' network: d_in -> hidden -> hidden -> d_out, ReLU between."""
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, d_out)
    )


def _fit(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    loss_fn=F.cross_entropy,
) -> nn.Module:
    """Adam on loss_fn(model(x), target) over shuffled mini-batches (classes for a classifier, images for a
    decoder); returns the model in evaluation mode."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen).to(x.device)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            loss = loss_fn(model(x[idx]), target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def train_judge(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, epochs: int = 2, seed: int = 0) -> nn.Module:
    """An image classifier trained here, independently of the system it judges: a small CNN for
    images (C, H, W) (about 99% on MNIST after 2 epochs), an MLP for flat inputs. The caller's
    random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _train_judge(x, y, num_classes, epochs, seed)


def _train_judge(x: torch.Tensor, y: torch.Tensor, num_classes: int, epochs: int, seed: int) -> nn.Module:
    if x.dim() == 4:
        c, h, w = x.shape[1:]
        model = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (h // 4) * (w // 4), 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )
    else:
        model = nn.Sequential(nn.Linear(x.shape[1], 512), nn.ReLU(), nn.Linear(512, num_classes))
    model.to(x.device)
    return _fit(model, x, y, epochs=epochs, batch_size=128, lr=1e-3, seed=seed)


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train.mean(0, keepdim=True), train.std(0, keepdim=True).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def linear_probe(train: torch.Tensor, y_train: torch.Tensor, test: torch.Tensor, y_test: torch.Tensor) -> float:
    """Test accuracy of a logistic regression (scikit-learn, lbfgs) fitted on frozen codes."""
    from sklearn.linear_model import LogisticRegression  # lazy: ~2 s of every command's start-up

    train, test = _standardise(train.float().cpu(), test.float().cpu())
    clf = LogisticRegression(max_iter=2000)
    clf.fit(train.numpy(), y_train.cpu().numpy())
    return float((clf.predict(test.numpy()) == y_test.cpu().numpy()).mean())


def mlp_probe(
    train: torch.Tensor,
    y_train: torch.Tensor,
    test: torch.Tensor,
    y_test: torch.Tensor,
    num_classes: int,
    *,
    epochs: int = 30,
    hidden: int = 256,
    seed: int = 0,
) -> float:
    """Test accuracy of a fresh two-hidden-layer MLP trained on frozen codes (a stronger probe than
    the adversary the system trained against, whatever that was)."""
    train, test = _standardise(train.float(), test.float())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _mlp_probe(train, y_train, test, y_test, num_classes, epochs, hidden, seed)


def _mlp_probe(train, y_train, test, y_test, num_classes: int, epochs: int, hidden: int, seed: int) -> float:
    model = _two_hidden_mlp(train.shape[1], hidden, num_classes).to(train.device)
    _fit(model, train, y_train, epochs=epochs, batch_size=256, lr=1e-3, seed=seed)
    with torch.no_grad():
        return float((model(test).argmax(1) == y_test).float().mean())


def fresh_decoder_bce(
    train_codes: torch.Tensor,
    x_train: torch.Tensor,
    test_codes: torch.Tensor,
    x_test: torch.Tensor,
    *,
    epochs: int = 10,
    hidden: int = 256,
    seed: int = 0,
) -> float:
    """Test reconstruction error (per-pixel BCE) of a fresh two-hidden-layer MLP decoder trained on frozen
    codes: (N, d) codes, (N, ...) images in [0, 1]. Two such decoders, one given (s, z) and one s alone,
    trained alike, measure what z adds to the image whatever the system's own decoder learned to do."""
    train_codes, test_codes = _standardise(train_codes.float(), test_codes.float())
    target_train, target_test = x_train.flatten(1).float(), x_test.flatten(1).float()  # (N, D)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _two_hidden_mlp(train_codes.shape[1], hidden, target_train.shape[1]).to(train_codes.device)
        _fit(
            model,
            train_codes,
            target_train,
            epochs=epochs,
            batch_size=256,
            lr=1e-3,
            seed=seed,
            loss_fn=F.binary_cross_entropy_with_logits,
        )
    return float(F.binary_cross_entropy_with_logits(batched(model, test_codes), target_test))


def save_grid(path: Path, rows: list[tuple[str, torch.Tensor]], title: str = "") -> None:
    """Rows of images, each (n, C, H, W) in [0, 1], labelled on the left."""

    plt = pyplot()
    n = max(len(imgs) for _, imgs in rows)
    fig, axes = plt.subplots(
        len(rows), 1, figsize=(1.0 * n + 1.6, 1.1 * len(rows) + (0.4 if title else 0)), squeeze=False
    )
    for ax, (label, imgs) in zip(axes[:, 0], rows):
        ax.imshow(tile(imgs, cols=len(imgs)), cmap="gray_r" if imgs.shape[1] == 1 else None, vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def tile(imgs: torch.Tensor, cols: int) -> np.ndarray:
    """(n, C, H, W) -> one (rows*H, cols*W[, C]) array, one pixel of padding between images."""
    imgs = imgs.detach().float().clamp(0, 1).cpu()
    n, c, h, w = imgs.shape
    rows = -(-n // cols)
    canvas = torch.ones(c, rows * (h + 1) - 1, cols * (w + 1) - 1) * (0.0 if c == 1 else 1.0)
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[:, r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = imgs[i]
    out = canvas.permute(1, 2, 0).numpy()
    return out[..., 0] if c == 1 else out


def save_tiles(path: Path, imgs: torch.Tensor, cols: int, title: str = "") -> None:
    plt = pyplot()
    arr = tile(imgs, cols)
    fig = plt.figure(figsize=(arr.shape[1] / 28 * 0.9 + 0.2, arr.shape[0] / 28 * 0.9 + 0.5))
    plt.imshow(arr, cmap="gray_r" if arr.ndim == 2 else None, vmin=0, vmax=1)
    plt.axis("off")
    if title:
        plt.title(title, fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def tsne_plot(codes: torch.Tensor, labels: torch.Tensor, path: Path, title: str, seed: int = 0) -> None:
    points = codes.float().cpu().numpy()  # (N, d)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    if not (points.max(0) - points.min(0)).max() > 0:
        # Every code equal (a collapsed z): scikit-learn's t-SNE crashes the process (segmentation fault)
        # on such input, losing the run's results; there is nothing to embed.
        ax.text(0.5, 0.5, "all codes are equal: nothing to embed", ha="center", va="center")
        ax.set_title(title, fontsize=9)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return
    from sklearn.manifold import TSNE  # lazy, as above

    emb = TSNE(n_components=2, init="pca", random_state=seed).fit_transform(points)
    sc = ax.scatter(emb[:, 0], emb[:, 1], c=labels.cpu().numpy(), cmap="tab10", s=4)
    fig.colorbar(sc, ax=ax, ticks=range(10))
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- generative diversity


def judge_features(judge: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The judge's penultimate activations, its feature space for Fréchet distances: (N, ...) -> (N, F)."""
    return batched(judge[:-1], x)


def class_diversity(predicted: torch.Tensor, num_classes: int, min_share: float = 0.02) -> dict[str, Any]:
    """How a set of samples spreads over the classes a judge assigns them, from (N,) predictions.

    classes_covered: classes with at least `min_share` of the samples (2 %: a fifth of the uniform
    share with ten classes); max_class_share: the largest class's share, in [0, 1];
    kl_uniform: KL(histogram || uniform) in nats, 0 for a perfectly even spread, log K for one class."""
    counts = torch.bincount(predicted.flatten().cpu(), minlength=num_classes).double()  # (K,)
    share = counts / counts.sum()
    nonzero = share[share > 0]
    return {
        "classes_covered": int((share >= min_share).sum()),
        "max_class_share": float(share.max()),
        "kl_uniform": float((nonzero * (nonzero * num_classes).log()).sum()),
        "class_histogram": counts.long().tolist(),
    }


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, F) and (M, F):
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), in float64.

    tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2),
    a symmetric positive semi-definite matrix, so no general matrix square root is needed."""
    a, b = a.double().cpu(), b.double().cpu()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)  # (F, F) each
    evals, evecs = torch.linalg.eigh(cov_a)
    sqrt_a = evecs @ torch.diag(evals.clamp_min(0).sqrt()) @ evecs.T
    middle = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * middle)
