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

from ..errors import ConfigError
from ..evaluate import pyplot
from ..phases import OptimizerSpec, Phase, PhaseBatch, System, Terms
from .evaluation import batched, save_tiles, train_judge
from .registry import SYSTEMS, register_system, user_modules


@dataclass
class BeganOptions:
    z_dim: int = 32  # generator noise, uniform in [-1, 1]
    h_dim: int = 32  # the discriminator's bottleneck
    filters: int = 16  # n of the paper's conv blocks (the paper: 64-128 on 64x64 faces)
    gamma: float = 0.5  # diversity ratio E[L(G(z))] / E[L(x)]
    lambda_k: float = 0.001
    k_init: float = 0.0
    lr: float = 2e-4  # Adam for both; the paper uses 1e-4 (slower on a CPU budget)
    beta1: float = 0.5
    disc_steps: int = 1
    gen_steps: int = 1
    center: bool = True  # train on images mapped from [0, 1] to [-1, 1] (the paper's range); with MNIST's
    # black background in [0, 1], L(x) is small and k barely moves (mode collapse to "1"s, docs/results.md)
    n_samples: int = 64  # images in each saved sample grid (fixed noise)
    judge_epochs: int = 2  # the classifier that reads the final samples


class Balance(nn.Module):
    """BEGAN's equilibrium control: k and M_global as buffers (state, not parameters)."""

    def __init__(self, gamma: float, lambda_k: float, k_init: float) -> None:
        super().__init__()
        self.gamma, self.lambda_k = gamma, lambda_k
        self.register_buffer("k", torch.tensor(float(k_init)))
        self.register_buffer("m_global", torch.tensor(float("nan")))

    @torch.no_grad()
    def update(self, l_real: torch.Tensor, l_fake: torch.Tensor) -> None:
        balance = self.gamma * l_real - l_fake
        # New tensors, not in-place: this step's loss graph still holds the old k.
        self.k = (self.k + self.lambda_k * balance).clamp(0.0, 1.0)
        self.m_global = l_real + balance.abs()


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
        self.body = nn.Sequential(*_block(n, n), nn.Upsample(scale_factor=2), *_block(n, n),
                                  nn.Upsample(scale_factor=2), *_block(n, n), nn.Conv2d(n, c, 3, padding=1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(h).view(len(h), self.n, self.h0, self.w0))


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, d): conv blocks with strided-conv downsampling (n, 2n, 3n filters)."""

    def __init__(self, in_shape: tuple[int, int, int], n: int, d_out: int) -> None:
        super().__init__()
        c, h, w = in_shape
        self.body = nn.Sequential(
            nn.Conv2d(c, n, 3, padding=1), nn.ELU(), *_block(n, n),
            nn.Conv2d(n, 2 * n, 3, stride=2, padding=1), nn.ELU(), *_block(2 * n, 2 * n),
            nn.Conv2d(2 * n, 3 * n, 3, stride=2, padding=1), nn.ELU(), *_block(3 * n, 3 * n), nn.Flatten(),
        )
        self.fc = nn.Linear(3 * n * ((h + 3) // 4) * ((w + 3) // 4), d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


class AutoencoderDiscriminator(nn.Module):
    def __init__(self, in_shape: tuple[int, int, int], n: int, h_dim: int) -> None:
        super().__init__()
        self.encoder = ConvEncoder(in_shape, n, h_dim)
        self.decoder = ConvDecoder(h_dim, n, in_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def recon_l1(disc: nn.Module, v: torch.Tensor) -> torch.Tensor:
    """Per-sample L(v) = mean |D(v) - v|: (B, C, H, W) -> (B,)."""
    return (disc(v) - v).abs().flatten(1).mean(1)


def noise(n: int, z_dim: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.rand(n, z_dim, generator=generator).to(device) * 2 - 1  # (n, z_dim) uniform in [-1, 1]


def model_range(x: torch.Tensor, opts: BeganOptions) -> torch.Tensor:
    """Images in [0, 1] -> the range the networks work in."""
    return x * 2 - 1 if opts.center else x


def image_range(v: torch.Tensor, opts: BeganOptions) -> torch.Tensor:
    """The networks' range -> images in [0, 1]."""
    return ((v + 1) / 2 if opts.center else v).clamp(0, 1)


def disc_loss(nets: nn.ModuleDict, batches: list[PhaseBatch], state: nn.ModuleDict, *, opts: BeganOptions):
    x = model_range(batches[0].x, opts)  # (B, C, H, W)
    with torch.no_grad():  # the generator is frozen in this phase
        fake = nets["gen"](noise(len(x), opts.z_dim, x.device))
    balance = state["balance"]
    l_real, l_fake = recon_l1(nets["disc"], x), recon_l1(nets["disc"], fake)  # (B,) each
    terms = Terms()
    terms.add("l_real", l_real)
    terms.add("l_fake", l_fake, weight=-balance.k)  # k_t: this step's coefficient
    balance.update(l_real.detach().mean(), l_fake.detach().mean())  # k_t+1 and M_global
    terms.log("k", balance.k)
    terms.log("m_global", balance.m_global)
    return terms.out()


def gen_loss(nets: nn.ModuleDict, batches: list[PhaseBatch], state: nn.ModuleDict, *, opts: BeganOptions):
    x = batches[0].x  # only its batch size and device are used
    fake = nets["gen"](noise(len(x), opts.z_dim, x.device))
    terms = Terms()
    terms.add("l_gen", recon_l1(nets["disc"], fake))
    return terms.out()


@register_system("began", options=BeganOptions, modules=("gen", "disc"),
                 description="BEGAN: generator + autoencoder discriminator, k as state (seed 002)")
def build_began(in_shape: tuple[int, ...], num_classes: int, opts: BeganOptions,
                modules: dict[str, nn.Module] | None = None) -> System:
    given = user_modules(SYSTEMS["began"], modules)
    if len(in_shape) != 3 and not {"gen", "disc"} <= set(given):
        raise ConfigError(f"began's default networks take images (C, H, W); got input shape {in_shape}")
    nets = nn.ModuleDict({
        "gen": given.get("gen") or ConvDecoder(opts.z_dim, opts.filters, in_shape),
        "disc": given.get("disc") or AutoencoderDiscriminator(in_shape, opts.filters, opts.h_dim),
    })
    adam = OptimizerSpec("adam", opts.lr, betas=(opts.beta1, 0.999))
    bind = lambda fn: functools.partial(fn, opts=opts)
    phases = [Phase("disc", ("disc",), bind(disc_loss), adam, opts.disc_steps),
              Phase("gen", ("gen",), bind(gen_loss), adam, opts.gen_steps)]
    state = nn.ModuleDict({"balance": Balance(opts.gamma, opts.lambda_k, opts.k_init)})
    return System(nets=nets, phases=phases, state=state,
                  evaluate=functools.partial(evaluate_began, opts=opts),
                  headline=("k", "m_global_start", "m_global_end", "judge_confidence", "classes_covered"))


@torch.no_grad()
def samples(nets: nn.ModuleDict, opts: BeganOptions, n: int, seed: int = 0) -> torch.Tensor:
    """n generated images from fixed noise (the same at every call): (n, C, H, W)."""
    device = next(nets.parameters()).device
    return image_range(batched(nets["gen"], noise(n, opts.z_dim, device, torch.Generator().manual_seed(seed))), opts)


def evaluate_began(system: System, data, out_dir: Path | None, step: int, final: bool, *, opts: BeganOptions) -> dict[str, Any]:
    nets, balance = system.nets, system.state["balance"]
    out: dict[str, Any] = {"k": float(balance.k), "m_global": float(balance.m_global)}
    if out_dir is not None:
        (out_dir / "samples").mkdir(exist_ok=True)
        save_tiles(out_dir / "samples" / f"round_{step:07d}.png", samples(nets, opts, opts.n_samples), cols=8,
                   title=f"round {step}")
    if not final:
        return out
    if out_dir is not None:
        save_tiles(out_dir / "samples.png", samples(nets, opts, opts.n_samples), cols=8, title=f"BEGAN samples, round {step}")
        out.update(_m_global_trend(out_dir / "metrics.jsonl", plot=out_dir / "m_global.png"))
    # How digit-like the samples are: a classifier trained here on the real images reads 1,000 of them.
    if data.y_l is not None and len(data.y_l):
        device = next(nets.parameters()).device
        judge = train_judge(data.x_l.to(device), data.y_l.to(device), data.num_classes, epochs=opts.judge_epochs)
        probs = torch.softmax(batched(judge, samples(nets, opts, 1000, seed=1)), dim=1)  # (1000, K)
        counts = torch.bincount(probs.argmax(1), minlength=data.num_classes).float()
        out["judge_confidence"] = float(probs.max(1).values.mean())
        out["classes_covered"] = int((counts >= 0.02 * 1000).sum())
        out["class_histogram"] = counts.int().tolist()
        if "test" in data.eval_sets:  # the same statistic on real test images, for scale
            x_test = data.eval_sets["test"][0][:1000].to(device)
            out["judge_confidence_real"] = float(torch.softmax(batched(judge, x_test), 1).max(1).values.mean())
    return out


def _m_global_trend(metrics_path: Path, window: int = 5, plot: Path | None = None) -> dict[str, float]:
    """M_global averaged over the first and the last `window` logged intervals; with `plot`, M_global
    and k against rounds."""
    if not metrics_path.exists():
        return {}
    records = [r for r in map(json.loads, metrics_path.read_text().splitlines())
               if r.get("kind") == "train" and "disc/m_global" in r]
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
    return {"m_global_start": sum(values[:window]) / len(values[:window]),
            "m_global_end": sum(values[-window:]) / len(values[-window:])}
