"""BEGAN (Berthelot et al., 2017) as seed 002 writes its loss: a generator and an autoencoder
discriminator, with the loss coefficient k as state updated every step.

    L(v)  = mean |D(v) - v|                       (the discriminator is an autoencoder)
    L_D   = L(x) - k_t * L(G(z))                  phase `disc`, generator frozen
    L_G   = L(G(z))                               phase `gen`, discriminator frozen
    k_t+1 = clip(k_t + lambda_k * (gamma * L(x) - L(G(z))), 0, 1)
    M_global = L(x) + |gamma * L(x) - L(G(z))|    (falls as training converges)

As in the seed's Keras DiscriminatorLoss, k and M_global are updated from the discriminator
step's own measurements; both are buffers of `state["balance"]`, logged and checkpointed.
Modules: `gen` (noise (B, z_dim) -> image) and `disc` (image -> reconstructed image).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import rundir
from ..errors import ConfigError
from ..evaluation import pyplot
from ..phases import OptimizerSpec, Phase, PhaseBatch, System, Terms
from .evaluation import batched, class_diversity, frechet_distance, judge_features, save_tiles, train_judge
from .registry import SYSTEMS, register_system, user_modules


@dataclass
class BeganOptions:
    arch: str = "post"  # post: the paper's conv blocks (seed 002); infogan: a BatchNorm generator and a shallow
    # autoencoder discriminator, as public MNIST BEGANs use (FC1024-FC7x7x2n-deconv n-deconv C | conv n-FC h-FC-deconv C)
    z_dim: int = 32  # generator noise, uniform in [-1, 1]
    h_dim: int = 32  # the discriminator's bottleneck
    filters: int = 16  # n of the conv blocks (the paper: 64-128 on 64x64 faces)
    gen_hidden: int = 1024  # infogan: the generator's first dense layer
    gamma: float = 0.5  # diversity ratio E[L(G(z))] / E[L(x)]
    lambda_k: float = 0.001
    k_init: float = 0.0
    lr: float = 2e-4  # Adam, the discriminator's (and the generator's unless gen_lr is set)
    gen_lr: float = 0.0  # the generator's Adam lr; 0: the same as lr
    beta1: float = 0.5
    lr_decay_every: int = 0  # rounds per window; halve both lrs when a window's mean M_global is not below
    # the best earlier window's (the paper's decay on a stalled M_global); 0: no decay
    lr_min: float = 2e-5  # the decay's floor, for each phase
    recon: str = "l1"  # L(v): l1 = mean |D(v) - v| per image (the paper); l2norm = ||D(v) - v|| over the
    # whole batch / B (hwalsuklee's MNIST BEGAN, a scalar per batch)
    k_clip: bool = True  # clip k to [0, 1] (the paper); hwalsuklee's MNIST BEGAN leaves k unclipped
    frozen_norms: str = "eval"  # the frozen network's BatchNorm in the other's phase: eval (running
    # statistics, Keras' trainable=False) or batch (batch statistics, as GAN code that never switches modes)
    cs_weight: float = 0.0  # BEGAN-CS: + cs_weight * |Enc_D(G(z)) - z| in the discriminator loss (h_dim = z_dim)
    disc_steps: int = 1
    gen_steps: int = 1
    center: bool = True  # train on images mapped from [0, 1] to [-1, 1] (the paper's range); with MNIST's
    # black background in [0, 1], L(x) is small and k barely moves (mode collapse to "1"s)
    n_samples: int = 64  # images in each saved sample grid (fixed noise)
    judge_epochs: int = 2  # the classifier that reads the samples at every evaluation
    judge_samples: int = 10000  # samples it reads (class coverage, largest share, KL to uniform, Fréchet distance)


class Balance(nn.Module):
    """BEGAN's equilibrium control: k and M_global as buffers (state, not parameters), and the
    learning-rate factor that falls when M_global stalls."""

    def __init__(self, gamma: float, lambda_k: float, k_init: float, decay_window: int = 0, clip: bool = True) -> None:
        super().__init__()
        self.gamma, self.lambda_k, self.decay_window, self.clip = gamma, lambda_k, decay_window, clip
        self.register_buffer("k", torch.tensor(float(k_init)))
        self.register_buffer("m_global", torch.tensor(float("nan")))
        self.register_buffer("lr_factor", torch.tensor(1.0))
        self.register_buffer("m_window", torch.zeros(2))  # (sum of M_global, updates) in the current window
        self.register_buffer("m_best", torch.tensor(float("inf")))  # the lowest window mean so far

    @torch.no_grad()
    def update(self, l_real: torch.Tensor, l_fake: torch.Tensor) -> None:
        balance = self.gamma * l_real - l_fake
        # New tensors, not in-place: this step's loss graph still holds the old k.
        k = self.k + self.lambda_k * balance
        self.k = k.clamp(0.0, 1.0) if self.clip else k
        self.m_global = l_real + balance.abs()
        if self.decay_window:
            self._decay(self.m_global)

    def _decay(self, m_global: torch.Tensor) -> None:
        self.m_window = self.m_window + torch.stack([m_global.float(), torch.ones_like(self.m_window[1])])
        if int(self.m_window[1]) < self.decay_window:
            return
        mean = self.m_window[0] / self.m_window[1]
        if mean >= self.m_best:  # stalled: no better than the best window so far
            self.lr_factor = self.lr_factor / 2
        self.m_best = torch.minimum(self.m_best, mean)
        self.m_window = torch.zeros_like(self.m_window)


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ELU(), nn.Conv2d(c_out, c_out, 3, padding=1), nn.ELU()]


class ConvDecoder(nn.Module):
    """(B, d) -> (B, C, H, W) with H, W divisible by 4: dense to n x H/4 x W/4, then conv blocks with
    nearest upsampling (the paper's decoder, two upsamplings for 28x28)."""

    def __init__(self, d_in: int, n: int, out_shape: tuple[int, int, int]) -> None:
        super().__init__()
        c, h, w = out_shape
        self.n, self.h0, self.w0 = n, h // 4, w // 4
        self.fc = nn.Linear(d_in, n * self.h0 * self.w0)
        self.body = nn.Sequential(
            *_block(n, n),
            nn.Upsample(scale_factor=2),
            *_block(n, n),
            nn.Upsample(scale_factor=2),
            *_block(n, n),
            nn.Conv2d(n, c, 3, padding=1),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(h).view(len(h), self.n, self.h0, self.w0))


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, d): conv blocks with strided-conv downsampling (n, 2n, 3n filters)."""

    def __init__(self, in_shape: tuple[int, int, int], n: int, d_out: int) -> None:
        super().__init__()
        c, h, w = in_shape
        self.body = nn.Sequential(
            nn.Conv2d(c, n, 3, padding=1),
            nn.ELU(),
            *_block(n, n),
            nn.Conv2d(n, 2 * n, 3, stride=2, padding=1),
            nn.ELU(),
            *_block(2 * n, 2 * n),
            nn.Conv2d(2 * n, 3 * n, 3, stride=2, padding=1),
            nn.ELU(),
            *_block(3 * n, 3 * n),
            nn.Flatten(),
        )
        self.fc = nn.Linear(3 * n * ((h + 3) // 4) * ((w + 3) // 4), d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


class AutoencoderDiscriminator(nn.Module):
    """image -> encoder -> (B, h_dim) -> decoder -> image; the two halves are reachable for BEGAN-CS."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class InfoganGenerator(nn.Sequential):
    """(B, z_dim) -> (B, C, H, W), H and W divisible by 4: FC hidden-BN-ReLU, FC 2n x H/4 x W/4-BN-ReLU,
    4x4 stride-2 deconv to n (BN-ReLU), 4x4 stride-2 deconv to C, then tanh when images are centred."""

    def __init__(self, z_dim: int, hidden: int, n: int, out_shape: tuple[int, int, int], center: bool) -> None:
        c, h, w = out_shape
        super().__init__(
            nn.Linear(z_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * n * (h // 4) * (w // 4)),
            nn.BatchNorm1d(2 * n * (h // 4) * (w // 4)),
            nn.ReLU(),
            nn.Unflatten(1, (2 * n, h // 4, w // 4)),
            nn.ConvTranspose2d(2 * n, n, 4, 2, 1),
            nn.BatchNorm2d(n),
            nn.ReLU(),
            nn.ConvTranspose2d(n, c, 4, 2, 1),
            nn.Tanh() if center else nn.Sigmoid(),
        )


def infogan_discriminator(in_shape: tuple[int, int, int], n: int, h_dim: int, center: bool) -> AutoencoderDiscriminator:
    """A shallow autoencoder (hwalsuklee's MNIST BEGAN): 4x4 stride-2 conv to n + ReLU, FC to h_dim
    + BN + ReLU | FC back + BN + ReLU, 4x4 stride-2 deconv to C, sigmoid unless images are centred."""
    c, h, w = in_shape
    flat = n * (h // 2) * (w // 2)
    encoder = nn.Sequential(
        nn.Conv2d(c, n, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(flat, h_dim), nn.BatchNorm1d(h_dim), nn.ReLU()
    )
    decoder = nn.Sequential(
        nn.Linear(h_dim, flat),
        nn.BatchNorm1d(flat),
        nn.ReLU(),
        nn.Unflatten(1, (n, h // 2, w // 2)),
        nn.ConvTranspose2d(n, c, 4, 2, 1),
        *([] if center else [nn.Sigmoid()]),
    )
    return AutoencoderDiscriminator(encoder, decoder)


def default_networks(in_shape: tuple[int, int, int], opts: BeganOptions) -> dict[str, nn.Module]:
    if opts.arch == "post":
        return {
            "gen": ConvDecoder(opts.z_dim, opts.filters, in_shape),
            "disc": AutoencoderDiscriminator(
                ConvEncoder(in_shape, opts.filters, opts.h_dim), ConvDecoder(opts.h_dim, opts.filters, in_shape)
            ),
        }
    if opts.arch == "infogan":
        return {
            "gen": InfoganGenerator(opts.z_dim, opts.gen_hidden, opts.filters, in_shape, opts.center),
            "disc": infogan_discriminator(in_shape, opts.filters, opts.h_dim, opts.center),
        }
    raise ConfigError(f"began: unknown arch '{opts.arch}' (known: post, infogan)")


def recon_error(recon: torch.Tensor, v: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """L(v) from D(v) and v (B, C, H, W): l1 per image (B,), or l2norm, one scalar for the batch."""
    diff = (recon - v).float()
    if kind == "l2norm":
        return diff.pow(2).sum().sqrt() / len(v)
    return diff.abs().flatten(1).mean(1)


def recon_loss(disc: nn.Module, v: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """L(v) = the error of the discriminator's reconstruction of v (see recon_error)."""
    return recon_error(disc(v), v, kind)


def noise(n: int, z_dim: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    # Training draws on the device (no host copy per step); a `generator` (fixed evaluation noise) is a CPU stream.
    u = (
        torch.rand(n, z_dim, device=device)
        if generator is None
        else torch.rand(n, z_dim, generator=generator).to(device)
    )
    return u * 2 - 1  # (n, z_dim) uniform in [-1, 1]


def model_range(x: torch.Tensor, opts: BeganOptions) -> torch.Tensor:
    """Images in [0, 1] -> the range the networks work in."""
    return x * 2 - 1 if opts.center else x


def image_range(v: torch.Tensor, opts: BeganOptions) -> torch.Tensor:
    """The networks' range -> images in [0, 1]."""
    return ((v + 1) / 2 if opts.center else v).clamp(0, 1)


def disc_loss(nets: nn.ModuleDict, batches: list[PhaseBatch], state: nn.ModuleDict, *, opts: BeganOptions):
    x = model_range(batches[0].x, opts)  # (B, C, H, W)
    z = noise(len(x), opts.z_dim, x.device)  # (B, z_dim)
    with torch.no_grad():  # the generator is frozen in this phase
        fake = nets["gen"](z)
    balance, disc = state["balance"], nets["disc"]
    terms = Terms()
    l_real = terms.add("l_real", recon_loss(disc, x, opts.recon))  # its batch mean
    if opts.cs_weight:  # BEGAN-CS: the discriminator's code of a fake should recover its noise
        code = disc.encoder(fake)  # (B, h_dim = z_dim)
        l_fake = recon_error(disc.decoder(code), fake, opts.recon)
        terms.add("cs", (code.float() - z).abs().mean(1), weight=opts.cs_weight)
    else:
        l_fake = recon_loss(disc, fake, opts.recon)
    terms.add("l_fake", l_fake, weight=-balance.k)  # k_t: this step's coefficient
    balance.update(l_real.detach(), l_fake.detach().mean())  # k_t+1 and M_global
    terms.log("k", balance.k)
    terms.log("m_global", balance.m_global)
    if opts.lr_decay_every:
        terms.log("lr_factor", balance.lr_factor)
    return terms.out()


def gen_loss(nets: nn.ModuleDict, batches: list[PhaseBatch], state: nn.ModuleDict, *, opts: BeganOptions):
    x = batches[0].x  # only its batch size and device are used
    fake = nets["gen"](noise(len(x), opts.z_dim, x.device))
    terms = Terms()
    terms.add("l_gen", recon_loss(nets["disc"], fake, opts.recon))
    return terms.out()


@register_system(
    "began",
    options=BeganOptions,
    modules=("gen", "disc"),
    description="BEGAN: generator + autoencoder discriminator, k as state (seed 002)",
)
def build_began(
    in_shape: tuple[int, ...], num_classes: int, opts: BeganOptions, modules: dict[str, nn.Module] | None = None
) -> System:
    given = user_modules(SYSTEMS["began"], modules)
    if len(in_shape) != 3 and not {"gen", "disc"} <= set(given):
        raise ConfigError(f"began's default networks take images (C, H, W); got input shape {in_shape}")
    nets = nn.ModuleDict({**(default_networks(in_shape, opts) if len(in_shape) == 3 else {}), **given})
    if opts.recon not in ("l1", "l2norm"):
        raise ConfigError(f"began: recon is l1 or l2norm, not '{opts.recon}'")
    if opts.cs_weight and (opts.h_dim != opts.z_dim or not hasattr(nets["disc"], "encoder")):
        raise ConfigError(
            f"began: cs_weight needs a discriminator with .encoder/.decoder and h_dim = z_dim "
            f"(the code is compared with the noise); h_dim {opts.h_dim}, z_dim {opts.z_dim}"
        )
    gen_lr = opts.gen_lr or opts.lr
    phases = [
        Phase(
            "disc",
            ("disc",),
            functools.partial(disc_loss, opts=opts),
            OptimizerSpec("adam", opts.lr, betas=(opts.beta1, 0.999)),
            opts.disc_steps,
            lr_scale=_decayed(opts.lr, opts) if opts.lr_decay_every else None,
            frozen_norms=opts.frozen_norms,
        ),
        Phase(
            "gen",
            ("gen",),
            functools.partial(gen_loss, opts=opts),
            OptimizerSpec("adam", gen_lr, betas=(opts.beta1, 0.999)),
            opts.gen_steps,
            lr_scale=_decayed(gen_lr, opts) if opts.lr_decay_every else None,
            frozen_norms=opts.frozen_norms,
        ),
    ]
    # M_global is updated once per discriminator step: a window of lr_decay_every rounds
    state = nn.ModuleDict(
        {"balance": Balance(opts.gamma, opts.lambda_k, opts.k_init, opts.lr_decay_every * opts.disc_steps, opts.k_clip)}
    )
    return System(
        nets=nets,
        phases=phases,
        state=state,
        evaluate=functools.partial(evaluate_began, opts=opts, cache={}),
        headline=(
            "k",
            "m_global_start",
            "m_global_end",
            "classes_covered",
            "max_class_share",
            "kl_uniform",
            "frechet",
            "frechet_real",
            "judge_confidence",
        ),
    )


def _decayed(lr: float, opts: BeganOptions):
    """The phase's lr multiple: the balance's decay factor, but never below lr_min."""
    return lambda state: max(float(state["balance"].lr_factor), opts.lr_min / lr)


@torch.no_grad()
def samples(nets: nn.ModuleDict, opts: BeganOptions, n: int, seed: int = 0) -> torch.Tensor:
    """n generated images from fixed noise (the same at every call): (n, C, H, W)."""
    device = next(nets.parameters()).device
    return image_range(batched(nets["gen"], noise(n, opts.z_dim, device, torch.Generator().manual_seed(seed))), opts)


def evaluate_began(
    system: System, data, out_dir: Path | None, step: int, final: bool, *, opts: BeganOptions, cache: dict[str, Any]
) -> dict[str, Any]:
    """k, M_global and, at every evaluation, how diverse the samples are; pictures and trends at the end."""
    nets, balance = system.nets, system.state["balance"]
    out: dict[str, Any] = {
        "k": float(balance.k),
        "m_global": float(balance.m_global),
        "lr_factor": float(balance.lr_factor),
    }
    if out_dir is not None:
        (out_dir / "samples").mkdir(exist_ok=True)
        save_tiles(
            out_dir / "samples" / f"round_{step:07d}.png",
            samples(nets, opts, opts.n_samples),
            cols=8,
            title=f"round {step}",
        )
    if data.y_l is not None and len(data.y_l):
        out.update(sample_diversity(nets, data, opts, cache))
    if final and out_dir is not None:
        save_tiles(
            out_dir / "samples.png", samples(nets, opts, opts.n_samples), cols=8, title=f"BEGAN samples, round {step}"
        )
        out.update(_m_global_trend(out_dir / "metrics.jsonl", plot=out_dir / "m_global.png"))
        _diversity_plot(out_dir / "metrics.jsonl", out_dir / "diversity.png", {"step": step, **out})
    return out


def sample_diversity(nets: nn.ModuleDict, data, opts: BeganOptions, cache: dict[str, Any]) -> dict[str, Any]:
    """A judge classifier, trained once on the real training images and kept in `cache`, reads
    `judge_samples` samples: classes covered, largest class share, KL of the class histogram to
    uniform, mean confidence, and the Fréchet distance in the judge's feature space to the real test
    images (up to judge_samples of them; `frechet_real`: the same distance for as many real training
    images, the value a perfect generator would approach)."""
    device = next(nets.parameters()).device
    if "judge" not in cache:
        cache["judge"] = judge = train_judge(
            data.x_l.to(device), data.y_l.to(device), data.num_classes, epochs=opts.judge_epochs
        )
        real = data.eval_sets["test"][0] if "test" in data.eval_sets else data.x_l
        cache["real_features"] = judge_features(judge, real[: opts.judge_samples].to(device))
        train_features = judge_features(judge, data.x_l[: opts.judge_samples].to(device))
        cache["frechet_real"] = frechet_distance(train_features, cache["real_features"])
    judge = cache["judge"]
    fakes = samples(nets, opts, opts.judge_samples, seed=1)  # (N, C, H, W) in [0, 1]
    features = judge_features(judge, fakes)  # (N, F)
    with torch.no_grad():
        probs = torch.softmax(judge[-1](features), dim=1)  # (N, K)
    return {
        **class_diversity(probs.argmax(1), data.num_classes),
        "judge_confidence": float(probs.max(1).values.mean()),
        "frechet": frechet_distance(features, cache["real_features"]),
        "frechet_real": cache["frechet_real"],
    }


def _m_global_trend(metrics_path: Path, window: int = 5, plot: Path | None = None) -> dict[str, float]:
    """M_global averaged over the first and the last `window` logged intervals; with `plot`, M_global
    and k against rounds."""
    if not metrics_path.exists():
        return {}
    records = [
        r
        for r in map(json.loads, metrics_path.read_text().splitlines())
        if r.get("kind") == "train" and "disc/m_global" in r
    ]
    values = [r["disc/m_global"] for r in records]
    if not values:
        return {}
    if plot is not None:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.4))
        rounds = [r["step"] for r in records]
        ax.plot(rounds, values, label="M_global")
        ax.set_xlabel("round")
        ax.set_ylabel("M_global")
        ax2 = ax.twinx()
        ax2.plot(rounds, [r["disc/k"] for r in records], color="tab:orange", label="k")
        ax2.set_ylabel("k", color="tab:orange")
        ax.set_title("BEGAN convergence measure and k", fontsize=9)
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        plt.close(fig)
    return {
        "m_global_start": sum(values[:window]) / len(values[:window]),
        "m_global_end": sum(values[-window:]) / len(values[-window:]),
    }


def _diversity_plot(metrics_path: Path, path: Path, current: dict[str, Any]) -> None:
    """Fréchet distance (with the real images' own value) and the largest class share at each evaluation;
    `current` is this evaluation's, not yet in the log."""
    records = [
        r
        for r in rundir.read_jsonl(metrics_path)
        if r.get("kind") == "eval" and "frechet" in r and r["step"] < current["step"]
    ] + ([current] if "frechet" in current else [])
    if not records:
        return
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    rounds = [r["step"] for r in records]
    ax.plot(rounds, [r["frechet"] for r in records], marker="o", label="Fréchet distance, samples vs test")
    ax.axhline(records[-1]["frechet_real"], color="gray", ls="--", label="training vs test images")
    ax.set_yscale("log")
    ax.set_xlabel("round")
    ax.set_ylabel("Fréchet distance (judge features)")
    ax.legend(fontsize=7, loc="upper left")
    ax2 = ax.twinx()
    ax2.plot(
        rounds, [100 * r["max_class_share"] for r in records], color="tab:red", marker="s", label="largest class share"
    )
    ax2.set_ylabel("largest class share (%)", color="tab:red")
    ax2.set_ylim(0, 100)
    ax.set_title("BEGAN sample diversity, judged by a classifier", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
