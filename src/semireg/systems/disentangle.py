"""The adversarially disentangling autoencoder of seed 004: label information in s, the rest in z.

Modules (names as in the post): `enc_s`, `enc_z` (images -> codes), `dec` ((z, s) -> image logits),
`clf_s` (s -> class), `clf_z` (z -> class, the adversary), `clf_x` (images -> class). Three phases per
round, in the post's order and counts:

1. `sup` (1 step) trains enc_s, clf_s, clf_x: cross-entropy of clf_s(enc_s(x)) and of clf_x(x).
2. `adv` (3 steps) trains clf_z on z = enc_z(x) (enc_z frozen): cross-entropy with the labels.
3. `ae` (1 step) trains enc_z and dec (enc_s, clf_z, clf_x frozen): reconstruction of x from
   (enc_z(x), enc_s(x)); clf_z(z) pushed to the uniform distribution (the adversarial term); and
   clf_x(dec(enc_z(x), enc_s(x'))) pushed to the label of another image x' (the swap term).

A user module replaces a default one by name; `dec` is called as `dec(z, s)` and returns pixel
logits of shape (B, D) or the image shape (the reconstruction is their sigmoid).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..evaluation import evaluation_mode
from ..phases import OptimizerSpec, Phase, PhaseBatch, System, Terms
from .evaluation import batched, fresh_decoder_bce, linear_probe, mlp_probe, save_grid, train_judge, tsne_plot
from .registry import SYSTEMS, register_system, user_modules


@dataclass
class DisentangleOptions:
    dim_s: int = 16
    dim_z: int = 16
    hidden: int = 256  # width of the encoders' and decoder's two hidden layers
    enc_dropout: float = 0.2
    dec_dropout: float = 0.3
    adversary_hidden: list[int] = field(default_factory=list)  # clf_z's hidden widths; [] = linear, as the post
    recon: str = "bce"  # bce | mse | l1, per pixel, averaged per image
    w_s: float = 1.0  # sup phase: clf_s cross-entropy
    w_x: float = 1.0  # sup phase: clf_x cross-entropy
    w_recon: float = 10.0  # ae phase (the post's loss weights 10, 10, 1)
    w_adv: float = 10.0
    w_swap: float = 1.0
    sup_steps: int = 1
    adv_steps: int = 3
    ae_steps: int = 1
    sup_lr: float = 1e-3  # Adam
    adv_optimizer: str = "sgd"  # the post: SGD(0.001)
    adv_lr: float = 1e-3
    ae_lr: float = 1e-3  # Adam
    # Keeping z informative by construction (Jha et al., ECCV 2018, cycle-consistent VAE):
    variational: bool = False  # Enc_z gives a mean and a log-variance; training decodes a sample of z
    w_kl: float = 0.0  # KL(q(z|x) || N(0, I)), summed over z's dimensions, per image (needs variational)
    s_from: str = "self"  # self | same-class: x is reconstructed from its z and the s of another image of
    # its class, so what tells it from that image (its style) can only come through z
    adversary_reads: str = "sample"  # sample | mean | mean-standardized: which z the adversary (and Enc_z's
    # adversarial term) sees; sample and mean are the same for a deterministic Enc_z. mean-standardized: the
    # mean z scaled per dimension to unit variance over the batch, which is what the probes read (their inputs
    # are standardised): shrinking z towards a constant (the cheap answer to an adversary on the raw mean,
    # whose label-carrying offsets the probe then scales back up) no longer hides anything from it
    adversary_dropout: bool = True  # False: the adversary, and Enc_z's adversarial term, read codes computed with
    # Enc_z's dropout off, as the probes read them. With it on, the noise hid the label from the adversary that the
    # probes then read from the evaluation-mode mean (an MLP probe read 56 % of labels from z against the 23 % the
    # adversary saw)
    use_floor: float = 0.0  # > 0: z must be used: the batch mean of (reconstruction error with another image's z
    # minus with its own) is held above this many units of the per-pixel error (a hinge, weight w_use). It
    # constrains information, which a KL floor does not (a constant mean with a narrow variance pays any KL)
    w_use: float = 10.0
    w_cycle: float = 0.0  # reverse cycle: z ~ N(0, I) decoded with the s of two images and encoded again;
    # L1 between the two recovered z (z must not depend on s)
    # Evaluation after training
    probe_train: int = 20000  # training images whose frozen codes train the fresh probes
    probe_epochs: int = 30
    judge_epochs: int = 2
    tsne_points: int = 2000
    probe_sampled: bool = True  # variational z: the probes also read sampled z (Jha et al.'s protocol)
    guard_epochs: int = 10  # fresh decoders on (s, z) and on s alone: z_recon_gain, what z adds (0: collapsed)


class MLP(nn.Sequential):
    def __init__(self, d_in: int, hidden: list[int], d_out: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(d_in, width), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            d_in = width
        super().__init__(*layers, nn.Linear(d_in, d_out))


class Decoder(nn.Module):
    """(z, s) -> pixel logits (B, D): the post's two dense layers with dropout on concat(z, s)."""

    def __init__(self, dim_z: int, dim_s: int, hidden: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.net = MLP(dim_z + dim_s, [hidden, hidden], d_out, dropout)

    def forward(self, z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, s], dim=1))


def _recon_per_sample(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """(B, ...) pixel logits and targets in [0, 1] -> (B,) mean per-pixel loss."""
    logits, target = logits.flatten(1).float(), target.flatten(1).float()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1)
    recon = torch.sigmoid(logits)
    if kind == "mse":
        return (recon - target).pow(2).mean(1)
    return (recon - target).abs().mean(1)


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(1) == y).float().mean()


def sup_loss(nets: nn.ModuleDict, batches: list[PhaseBatch], state: nn.ModuleDict, *, opts: DisentangleOptions):
    x, y = batches[0].x, batches[0].y
    terms = Terms()
    logits_s = nets["clf_s"](nets["enc_s"](x))  # (B, K)
    logits_x = nets["clf_x"](x)  # (B, K)
    terms.add("ce_s", F.cross_entropy(logits_s.float(), y, reduction="none"), opts.w_s)
    terms.add("ce_x", F.cross_entropy(logits_x.float(), y, reduction="none"), opts.w_x)
    terms.log("acc_s", _accuracy(logits_s, y))
    return terms.out()


def adv_loss(nets: nn.ModuleDict, batches: list[PhaseBatch], state: nn.ModuleDict, *, opts: DisentangleOptions):
    x, y = batches[0].x, batches[0].y
    with torch.no_grad():  # enc_z is frozen in this phase and nothing upstream trains: no graph needed
        mean, log_var = adversary_posterior(nets["enc_z"], x, opts)
        z = adversary_view(mean, sample_z(mean, log_var), opts)  # (B, dim_z)
    logits_z = nets["clf_z"](z)
    terms = Terms()
    terms.add("ce_z", F.cross_entropy(logits_z.float(), y, reduction="none"))
    terms.log("acc_z", _accuracy(logits_z, y))
    return terms.out()


def z_posterior(
    enc_z: nn.Module, x: torch.Tensor, opts: DisentangleOptions
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mean (B, dim_z), log-variance (B, dim_z) or None for a deterministic Enc_z)."""
    out = enc_z(x)
    if not opts.variational:
        return out, None
    mean, log_var = out.chunk(2, dim=1)
    return mean, log_var.clamp(-12.0, 8.0)  # exp() stays finite in float32 and bf16


def adversary_posterior(
    enc_z: nn.Module, x: torch.Tensor, opts: DisentangleOptions
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The posterior the adversary reads: Enc_z as it is (dropout on in training), or in evaluation mode when
    `adversary_dropout` is off. Gradients flow either way (Enc_z's adversarial term trains through it)."""
    if opts.adversary_dropout:
        return z_posterior(enc_z, x, opts)
    with evaluation_mode(enc_z):
        return z_posterior(enc_z, x, opts)


@torch.no_grad()
def eval_mode_mean(enc_z: nn.Module, x: torch.Tensor, opts: DisentangleOptions) -> torch.Tensor:
    """The posterior mean (B, dim_z) as evaluation (and the probes) compute it: dropout off."""
    with evaluation_mode(enc_z):
        return z_posterior(enc_z, x, opts)[0]


def sample_z(
    mean: torch.Tensor, log_var: torch.Tensor | None, generator: torch.Generator | None = None
) -> torch.Tensor:
    if log_var is None:
        return mean
    # Training draws on the device; a `generator` (evaluation's fixed draws) is a CPU stream.
    eps = (
        torch.randn_like(mean)
        if generator is None
        else torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
    )
    return mean + eps * (0.5 * log_var).exp()


def standardize_batch(z: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """(B, d) -> (B, d), each dimension centred and scaled to unit variance over the batch. The scale is
    not detached: Enc_z cannot fool the adversary by shrinking z."""
    z = z.float()
    return (z - z.mean(0)) / (z.var(0, unbiased=False) + eps).sqrt()


def adversary_view(mean: torch.Tensor, z: torch.Tensor, opts: DisentangleOptions) -> torch.Tensor:
    """What the adversary reads, given the posterior mean and a sample z (the same tensor when deterministic)."""
    if opts.adversary_reads == "sample":
        return z
    return mean if opts.adversary_reads == "mean" else standardize_batch(mean)


def kl_to_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per image, summed over dimensions: (B, d) -> (B,)."""
    mean, log_var = mean.float(), log_var.float()
    return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(1)


def floor_term(gap: torch.Tensor, floor: float) -> torch.Tensor:
    """Per-image values whose batch mean is relu(floor - mean(gap)), with that hinge's gradient: (B,) -> (B,).
    Whether the floor is met is decided on the batch (a constant), not per image."""
    below = (gap.mean() < floor).detach().float()
    return below * (floor - gap)


def same_class_partner(y: torch.Tensor) -> torch.Tensor:
    """For each image of a batch, the index of another image of its class, drawn uniformly (itself only
    when it is its class's only image in the batch): (B,) labels -> (B,) indices."""
    same = y[:, None] == y[None, :]  # (B, B)
    others = same & ~torch.eye(len(y), dtype=torch.bool, device=y.device)
    alone = ~others.any(1)
    weights = (others | (alone[:, None] & same)).float()  # alone: only itself is left
    return torch.multinomial(weights, 1).squeeze(1)


def ae_loss(nets: nn.ModuleDict, batches: list[PhaseBatch], state: nn.ModuleDict, *, opts: DisentangleOptions):
    (x, y), (x_other, y_other) = (batches[0].x, batches[0].y), (batches[1].x, batches[1].y)
    terms = Terms()
    mean, log_var = z_posterior(nets["enc_z"], x, opts)  # (B, dim_z) each, trained
    z = sample_z(mean, log_var)  # (B, dim_z)
    with torch.no_grad():  # enc_s is frozen here and is only read
        s, s_other = nets["enc_s"](x), nets["enc_s"](x_other)  # (B, dim_s) each
    s_recon = s if opts.s_from == "self" else s[same_class_partner(y)]
    recon_logits = nets["dec"](z, s_recon)
    recon = _recon_per_sample(recon_logits, x, opts.recon)  # (B,)
    terms.add("recon", recon, opts.w_recon)
    if opts.use_floor > 0:
        # Through a detached copy of the decoder: the floor trains Enc_z only. Trained by it too, the decoder met
        # the floor by punishing a wrong z while its own z reconstructed no better than a collapsed one (docs).
        dec_params = {name: p.detach() for name, p in nets["dec"].named_parameters()}
        decode_fixed = lambda z_in: torch.func.functional_call(nets["dec"], dec_params, (z_in, s_recon))
        recon_own = _recon_per_sample(decode_fixed(z), x, opts.recon)  # (B,)
        recon_other_z = _recon_per_sample(decode_fixed(z.roll(1, dims=0)), x, opts.recon)  # (B,)
        terms.log("use_gap", (recon_other_z - recon_own).mean())
        terms.add("use_floor", floor_term(recon_other_z - recon_own, opts.use_floor), opts.w_use)
    if log_var is not None:
        terms.add("kl", kl_to_standard_normal(mean, log_var), opts.w_kl)  # (B,): the posterior Enc_z gives
    # Enc_z against the frozen adversary: its prediction on z should be uniform over the classes.
    adv_mean, adv_z = (mean, z) if opts.adversary_dropout else adversary_codes(nets["enc_z"], state, x, y, opts)
    log_p_z = F.log_softmax(nets["clf_z"](adversary_view(adv_mean, adv_z, opts)).float(), dim=1)  # (B, K)
    terms.add("adv_uniform", -log_p_z.mean(1), opts.w_adv)
    # The swap: z of x with s of another image must decode to an image of that image's class.
    swapped = torch.sigmoid(nets["dec"](z, s_other)).reshape(x.shape)
    logits_swap = nets["clf_x"](swapped)
    terms.add("ce_swap", F.cross_entropy(logits_swap.float(), y_other, reduction="none"), opts.w_swap)
    terms.log("acc_swap_clf_x", _accuracy(logits_swap, y_other))
    if opts.w_cycle:
        terms.add("cycle", _reverse_cycle(nets, s, s_other, x.shape, opts), opts.w_cycle)
    return terms.out()


def adversary_codes(
    enc_z: nn.Module, state: nn.ModuleDict, x: torch.Tensor, y: torch.Tensor, opts: DisentangleOptions
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, sample), each (B, dim_z), as the adversary reads them (`adversary_posterior`), with a graph to Enc_z."""
    mean, log_var = adversary_posterior(enc_z, x, opts)
    return mean, sample_z(mean, log_var)


def _reverse_cycle(
    nets: nn.ModuleDict, s_a: torch.Tensor, s_b: torch.Tensor, shape: torch.Size, opts: DisentangleOptions
) -> torch.Tensor:
    """A z drawn from the prior, decoded with two different s (B, dim_s) each and encoded again, must come
    back the same both times: (B,) L1 between the two recovered means."""
    z_prior = torch.randn(len(s_a), opts.dim_z, device=s_a.device)  # (B, dim_z)
    pair = torch.cat([torch.sigmoid(nets["dec"](z_prior, s_a)), torch.sigmoid(nets["dec"](z_prior, s_b))])
    recovered = z_posterior(nets["enc_z"], pair.reshape(2 * len(s_a), *shape[1:]), opts)[0]  # (2B, dim_z)
    z_a, z_b = recovered.chunk(2)
    return (z_a - z_b).abs().float().mean(1)


@register_system(
    "disentangle",
    options=DisentangleOptions,
    modules=("enc_s", "enc_z", "dec", "clf_s", "clf_z", "clf_x"),
    description="adversarially disentangled autoencoder (seed 004): labels in s, the rest in z",
)
def build_disentangle(
    in_shape: tuple[int, ...], num_classes: int, opts: DisentangleOptions, modules: dict[str, nn.Module] | None = None
) -> System:
    if opts.recon not in ("bce", "mse", "l1"):
        raise ConfigError(f"method.recon: '{opts.recon}' is not one of bce, mse, l1")
    if opts.adv_optimizer not in ("sgd", "adam"):
        raise ConfigError(f"method.adv_optimizer: '{opts.adv_optimizer}' is not one of sgd, adam")
    if opts.s_from not in ("self", "same-class"):
        raise ConfigError(f"method.s_from: '{opts.s_from}' is not one of self, same-class")
    if opts.adversary_reads not in ("sample", "mean", "mean-standardized"):
        raise ConfigError(
            f"method.adversary_reads: '{opts.adversary_reads}' is not one of sample, mean, mean-standardized"
        )
    if opts.use_floor < 0 or opts.w_use < 0:
        raise ConfigError("method.use_floor and method.w_use: >= 0")
    if opts.w_kl and not opts.variational:
        raise ConfigError("method.w_kl needs method.variational = true (a deterministic z has no posterior)")
    d_in = math.prod(in_shape)
    nets = {
        "enc_s": MLP(d_in, [opts.hidden, opts.hidden], opts.dim_s, opts.enc_dropout),
        "enc_z": MLP(d_in, [opts.hidden, opts.hidden], opts.dim_z * (2 if opts.variational else 1), opts.enc_dropout),
        "dec": Decoder(opts.dim_z, opts.dim_s, opts.hidden, d_in, opts.dec_dropout),
        "clf_s": MLP(opts.dim_s, [], num_classes),
        "clf_z": MLP(opts.dim_z, list(opts.adversary_hidden), num_classes),
        "clf_x": MLP(d_in, [], num_classes),
    }
    nets.update(user_modules(SYSTEMS["disentangle"], modules))
    bind = lambda fn: functools.partial(fn, opts=opts)
    phases = [
        Phase("sup", ("enc_s", "clf_s", "clf_x"), bind(sup_loss), OptimizerSpec("adam", opts.sup_lr), opts.sup_steps),
        Phase("adv", ("clf_z",), bind(adv_loss), OptimizerSpec(opts.adv_optimizer, opts.adv_lr), opts.adv_steps),
        Phase("ae", ("enc_z", "dec"), bind(ae_loss), OptimizerSpec("adam", opts.ae_lr), opts.ae_steps, batches=2),
    ]
    state = nn.ModuleDict()
    return System(
        nets=nn.ModuleDict(nets),
        phases=phases,
        state=state,
        needs_labels=True,
        needs_test_set=True,
        evaluate=functools.partial(evaluate_disentangle, opts=opts),
        headline=(
            "clf_s_accuracy",
            "z_probe_mlp",
            "z_probe_mlp_sampled",
            "z_probe_linear",
            "s_probe_mlp",
            "swap_accuracy",
            "recon_bce",
            "recon_bce_other_z",
            "z_std",
            "z_recon_gain",
        ),
    )


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def codes(
    nets: nn.ModuleDict,
    x: torch.Tensor,
    opts: DisentangleOptions,
    generator: torch.Generator | None = None,
    state: nn.ModuleDict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, z) of x in eval mode: (N, dim_s), (N, dim_z); z is the posterior's mean, or with `generator`
    a sample from it (the same as the mean for a deterministic Enc_z). `state` is the system's loss state
    (none of it changes the codes)."""
    z = (
        batched(lambda v: sample_z(*z_posterior(nets["enc_z"], v, opts), generator), x)
        if generator is not None
        else batched(lambda v: z_posterior(nets["enc_z"], v, opts)[0], x)
    )
    s = batched(nets["enc_s"], x)
    return s, z


@torch.no_grad()
def decode(nets: nn.ModuleDict, z: torch.Tensor, s: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    out = torch.cat([torch.sigmoid(nets["dec"](z[i : i + 1000], s[i : i + 1000])) for i in range(0, len(z), 1000)])
    return out.reshape(len(z), *shape)


def evaluate_disentangle(
    system: System, data, out_dir: Path | None, step: int, final: bool, *, opts: DisentangleOptions
) -> dict[str, Any]:
    """Clf_s accuracy, the adversary's accuracy and reconstruction error on the test set; when
    `final`, also fresh probes on frozen s and z, swap accuracy under an independent judge, pictures."""
    nets = system.nets
    device = next(nets.parameters()).device
    x_test, y_test = (t.to(device) for t in data.eval_sets["test"])
    shape = tuple(x_test.shape[1:])
    s_test, z_test = codes(nets, x_test, opts, state=system.state)
    recon = decode(nets, z_test, s_test, shape)
    # A z that carries nothing (the degenerate way to fool the adversary) reconstructs as well from
    # another image's z: the gap between these two errors is how much z is used.
    shuffled = torch.roll(torch.arange(len(z_test), device=device), 1)
    recon_other_z = decode(nets, z_test[shuffled], s_test, shape)
    out: dict[str, Any] = {
        "clf_s_accuracy": float((batched(nets["clf_s"], s_test).argmax(1) == y_test).float().mean()),
        "clf_z_accuracy": float(
            (batched(nets["clf_z"], adversary_view(z_test, z_test, opts)).argmax(1) == y_test).float().mean()
        ),
        "clf_x_accuracy": float((batched(nets["clf_x"], x_test).argmax(1) == y_test).float().mean()),
        "recon_bce": float(F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), x_test.float())),
        "recon_mse": float((recon - x_test).pow(2).mean()),
        "recon_bce_other_z": float(F.binary_cross_entropy(recon_other_z.clamp(1e-6, 1 - 1e-6), x_test.float())),
        "z_std": float(z_test.std(0).mean()),
    }
    if not final:
        return out

    seed = 0
    gen = torch.Generator().manual_seed(seed)
    x_tr, y_tr = data.x_l, data.y_l
    pick = torch.randperm(len(x_tr), generator=gen)[: opts.probe_train]
    x_probe, y_probe = x_tr[pick].to(device), y_tr[pick].to(device)
    s_probe, z_probe = codes(nets, x_probe, opts, state=system.state)
    k = data.num_classes
    out["z_probe_linear"] = linear_probe(z_probe, y_probe, z_test, y_test)
    out["s_probe_linear"] = linear_probe(s_probe, y_probe, s_test, y_test)
    out["z_probe_mlp"] = mlp_probe(z_probe, y_probe, z_test, y_test, k, epochs=opts.probe_epochs, seed=seed)
    out["s_probe_mlp"] = mlp_probe(s_probe, y_probe, s_test, y_test, k, epochs=opts.probe_epochs, seed=seed)
    if opts.variational and opts.probe_sampled:  # Jha et al.'s protocol: probes read sampled z
        z_probe_s = codes(nets, x_probe, opts, torch.Generator().manual_seed(seed + 1), system.state)[1]
        z_test_s = codes(nets, x_test, opts, torch.Generator().manual_seed(seed + 2), system.state)[1]
        out["z_probe_mlp_sampled"] = mlp_probe(
            z_probe_s, y_probe, z_test_s, y_test, k, epochs=opts.probe_epochs, seed=seed
        )
        out["z_probe_linear_sampled"] = linear_probe(z_probe_s, y_probe, z_test_s, y_test)
    out.update(z_use_guard(s_probe, z_probe, x_probe, s_test, z_test, x_test, opts))

    # Swap accuracy: a classifier trained here on the training images (never on decodings) reads
    # dec(z_i, s_j) and should answer y_j; j is a fixed permutation of the test set.
    judge = train_judge(x_tr.to(device), y_tr.to(device), k, epochs=opts.judge_epochs, seed=seed)
    other = torch.randperm(len(y_test), generator=gen).to(device)
    swapped = decode(nets, z_test, s_test[other], shape)
    judge_on = lambda imgs: batched(judge, imgs).argmax(1)
    out["judge_accuracy"] = float((judge_on(x_test) == y_test).float().mean())
    out["judge_on_reconstructions"] = float((judge_on(recon) == y_test).float().mean())
    out["swap_accuracy"] = float((judge_on(swapped) == y_test[other]).float().mean())
    out["swap_keeps_z_label"] = float((judge_on(swapped) == y_test).float().mean())  # should be near chance

    if out_dir is not None:
        _pictures(nets, x_test, y_test, s_test, z_test, shape, out_dir, opts, gen)
    return out


def z_use_guard(s_probe, z_probe, x_probe, s_test, z_test, x_test, opts: DisentangleOptions) -> dict[str, float]:
    """The third collapse guard: what the mean z adds to the reconstruction, measured by fresh decoders trained
    alike on (s, z) and on s alone (BCE per pixel on the test set). The system's own decoder can pass the
    other two guards without z carrying style, by learning to punish a wrong z."""
    with_z = fresh_decoder_bce(
        torch.cat([s_probe, z_probe], 1), x_probe, torch.cat([s_test, z_test], 1), x_test, epochs=opts.guard_epochs
    )
    s_only = fresh_decoder_bce(s_probe, x_probe, s_test, x_test, epochs=opts.guard_epochs)
    return {"recon_bce_fresh_s_z": with_z, "recon_bce_fresh_s_only": s_only, "z_recon_gain": s_only - with_z}


def _pictures(nets, x_test, y_test, s_test, z_test, shape, out_dir: Path, opts: DisentangleOptions, gen) -> None:
    idx = torch.randperm(len(y_test), generator=gen)[:10].to(x_test.device)
    other = torch.randperm(len(y_test), generator=gen)[:10].to(x_test.device)
    lab = lambda ids: " ".join(str(int(v)) for v in y_test[ids])
    rows = [
        (f"originals\n{lab(idx)}", x_test[idx]),
        ("reconstructed", decode(nets, z_test[idx], s_test[idx], shape)),
        (f"s from\n{lab(other)}", decode(nets, z_test[idx], s_test[other], shape)),
        ("z from\nothers", decode(nets, z_test[other], s_test[idx], shape)),
    ]
    save_grid(
        out_dir / "swaps.png",
        rows,
        "rows 3-4: z of the originals with s of other images; s of the originals with z of others",
    )
    # Analogy grid: row i takes z (style) from image i, column j takes s (class) from digit j.
    rows_z = idx[:8]
    per_class = torch.stack([torch.nonzero(y_test == c)[0, 0] for c in range(int(y_test.max()) + 1)])
    grid = [
        ("z of\n" + str(int(y_test[i])), decode(nets, z_test[i].expand(len(per_class), -1), s_test[per_class], shape))
        for i in rows_z
    ]
    save_grid(
        out_dir / "analogies.png",
        [("s of", x_test[per_class])] + grid,
        "each row: one image's z with the s of one test image per class (top row)",
    )
    n = min(opts.tsne_points, len(y_test))
    pts = torch.randperm(len(y_test), generator=gen)[:n].to(x_test.device)
    tsne_plot(s_test[pts], y_test[pts], out_dir / "tsne_s.png", f"t-SNE of s ({n} test images), coloured by label")
    tsne_plot(z_test[pts], y_test[pts], out_dir / "tsne_z.png", f"t-SNE of z ({n} test images), coloured by label")
