"""Virtual Adversarial Training (Miyato et al.), as a supervised regulariser and semi-supervised.

The adversarial direction comes from `torch.autograd.grad` with respect to the perturbation only:
no parameter gradients, no `zero_grad`, no host round trips. The clean prediction is a constant
target. Perturbed passes run with BatchNorm running statistics frozen. Under autocast the power
iteration runs in float32 by default (`probe = "fp32"`: xi * d underflows in fp16, and bf16's 8-bit
mantissa resolves a probe of norm xi only coarsely); `probe = "autocast"` runs it in the autocast
dtype, cheaper, at an xi that dtype resolves (docs/performance.md has the measurements).
In a network with random layers (dropout, Gaussian noise) each pass draws anew, so the probe compares
two different noisy networks unless `same_noise` replays the clean pass's random draws in it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ConfigError
from .common import marginal_kl_to_uniform, ramp_up
from .registry import Batch, DataStats, accuracy, register_method
from .supervised import cross_entropy

_STAT_PREFIXES = ("running_", "num_batches_tracked")
# The probe size xi a power iteration resolves best, per probe precision, measured on the registered
# seed CNNs on MNIST at initialisation and after training (benchmarks/speed/vat_probe.py;
# tests/test_vat_probe.py): cosine of one iteration with the float64 H·d, mean over 4 (model, state)
# pairs: float32 0.93 at xi 0.1, 0.84 at 0.3, 0.61 at 1; bf16 0.63 at 0.1, 0.72 at 0.3, 0.60 at 1.
# Larger probes leave the quadratic regime of these ReLU/max-pool networks; smaller ones drown in
# rounding (bf16 first).
DEFAULT_XI = {"fp32": 0.1, "autocast": 0.3}


@contextlib.contextmanager
def frozen_running_stats(model: nn.Module) -> Iterator[None]:
    """Forward passes inside do not update running statistics of any norm layer.

    torch's BatchNorm layers (1d/2d/3d, SyncBatchNorm, lazy ones) read `track_running_stats` at
    forward time: switched off in training mode they normalise with the batch's statistics and
    neither update the running buffers nor count the batch, which is exactly what a perturbed pass
    needs, at no cost. Any other module holding running statistics (InstanceNorm, which ignores the
    flag, or a user's own BatchNorm) gets its `running_*` buffers saved and written back.
    """
    toggled = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [
        (buf, buf.detach().clone())
        for m in model.modules()
        if not isinstance(m, _BatchNorm)
        for name, buf in m.named_buffers(recurse=False)
        if name.startswith(_STAT_PREFIXES)
    ]
    for m in toggled:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in toggled:
            m.track_running_stats = True
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


RngSnapshot = tuple[torch.Tensor, torch.Tensor | None]


def rng_snapshot(device: torch.device) -> RngSnapshot:
    """The generator states a forward pass on `device` draws from (the CPU's; the GPU's on CUDA)."""
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


@contextlib.contextmanager
def replayed_rng(snapshot: RngSnapshot | None, device: torch.device) -> Iterator[None]:
    """Inside, random draws repeat those made after `snapshot`; after, the streams go on as before.
    None: nothing replayed."""
    if snapshot is None:
        yield
        return
    cpu_state, cuda_state = snapshot
    with torch.random.fork_rng(devices=[device] if cuda_state is not None else []):
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, device)
        yield


def replayable_pass(model: nn.Module, x: torch.Tensor, keep: bool) -> tuple[torch.Tensor, RngSnapshot | None]:
    """model(x), with the generator states it drew from when `keep` (for a probe to replay them)."""
    snapshot = rng_snapshot(x.device) if keep else None
    return model(x), snapshot


def kl_from_logits(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(p || q), p = softmax(target_logits), q = softmax(logits). (B, K) -> (B,)"""
    log_p = F.log_softmax(target_logits.float(), dim=1)
    log_q = F.log_softmax(logits.float(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def l2_normalize(d: torch.Tensor) -> torch.Tensor:
    """Scale each sample of d (B, ...) to unit L2 norm."""
    norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)  # (B,)
    return d / norm.view(-1, *([1] * (d.ndim - 1)))


def _power_iteration(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    d: torch.Tensor,
    *,
    xi: float,
    power_iters: int,
    fp32: bool = True,
    replay: RngSnapshot | None = None,
) -> torch.Tensor:
    """d <- normalize(grad_r KL(target || model(x + r)) at r = xi * d), `power_iters` times, in
    float32 (`fp32`) or in whatever autocast is active, each pass replaying the random draws after
    `replay` if given. The caller holds `frozen_running_stats(model)`.
    """
    keep = contextlib.nullcontext() if not fp32 else torch.autocast(device_type=x.device.type, enabled=False)
    with keep:
        for _ in range(power_iters):
            r = (xi * d).requires_grad_(True)
            with replayed_rng(replay, x.device):
                probe_logits = model(x + r)  # (B, K)
            dist = kl_from_logits(target, probe_logits).sum()
            # Gradient w.r.t. the probe only; parameters see nothing.
            (grad,) = torch.autograd.grad(dist, r)
            d = l2_normalize(grad.detach())
    return d


def vat_direction(
    model: nn.Module,
    x: torch.Tensor,
    logits: torch.Tensor,
    *,
    xi: float,
    power_iters: int,
    d: torch.Tensor | None = None,
    fp32: bool = True,
) -> torch.Tensor:
    """Unit-norm adversarial direction r_adv / eps, by power iteration on the KL Hessian.

    x: (B, ...) float inputs; logits: (B, K) clean predictions (treated as constants).
    """
    x = x.detach().float()
    d = l2_normalize(torch.randn_like(x) if d is None else d.float())
    with frozen_running_stats(model):
        return _power_iteration(model, x, logits.detach().float(), d, xi=xi, power_iters=power_iters, fp32=fp32)


def vat_loss(
    model: nn.Module,
    x: torch.Tensor,
    logits: torch.Tensor,
    *,
    xi: float,
    eps: float,
    power_iters: int,
    fp32_probe: bool = True,
    replay: RngSnapshot | None = None,
) -> torch.Tensor:
    """Local distributional smoothness: mean KL(p(x) || p(x + eps * d_adv)), p(x) constant.
    `replay`: the generator states before the pass that gave `logits`, replayed in the probe."""
    x32 = x.detach().float()
    d = l2_normalize(torch.randn_like(x32))
    # One freeze around every perturbed pass (power iteration and the adversarial pass).
    with frozen_running_stats(model):
        d = _power_iteration(
            model, x32, logits.detach().float(), d, xi=xi, power_iters=power_iters, fp32=fp32_probe, replay=replay
        )
        adv_logits = model(x + eps * d.to(x.dtype))  # (B, K)
    return kl_from_logits(logits.detach(), adv_logits).mean()


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Mean prediction entropy. (B, K) -> scalar"""
    log_p = F.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


IMAGE_EPS = 2.5  # L2 radius in pixel units ([0, 1] images): the VAT paper's MNIST range
# On vectors the radius is a share of a row's RMS distance from the mean row, so that it means the
# same on any feature scale; the share was chosen on validation rows of digits and wine with the
# vector MLP (LayerNorm; benchmarks/reproduce/vector_defaults.py --methods vat --eps-shares ...):
# 0.05 -> 80.6 / 92.0 %, 0.1 -> 74.5 / 90.8 %, 0.2 -> 71.8 / 95.2 % (labels only 79.7 / 91.7 %).
VECTOR_EPS_SHARE = 0.05


@dataclass
class VATOptions:
    # L2 radius of the adversarial perturbation, in input units; None: IMAGE_EPS on images, on
    # vectors VECTOR_EPS_SHARE of the rows' RMS distance from their mean (said when filled in)
    eps: float | None = None
    xi: float | None = None  # probe size of the power iteration; None: DEFAULT_XI of the probe's precision
    power_iters: int = 1
    weight: float = 1.0  # alpha: weight of the VAT term
    entmin: float = 0.0  # weight of entropy minimisation on the VAT batch's predictions
    balance: float = 0.0  # weight of KL(mean prediction on the VAT batch || uniform) (IMSAT's marginal entropy)
    on: str = "unlabeled"  # unlabeled | labeled | both: which batch the VAT term regularises
    warmup: float = 0.0  # fraction of training over which the VAT weight ramps up linearly (USB: 0.4)
    probe: str = "fp32"  # fp32 | autocast: the power iteration's precision under mixed precision
    # The probe replays the clean pass's random draws (dropout, noise layers): it then measures one
    # network's curvature at x, as a power iteration on the Hessian means, instead of the gap between
    # two noisy passes (the authors' Theano code differentiates the clean pass itself).
    same_noise: bool = False


def vat_data_defaults(opts: VATOptions, stats: DataStats) -> tuple[VATOptions, str | None]:
    """eps from the data's scale when none is given."""
    if opts.eps is not None:
        return opts, None
    if not stats.is_vector:
        return dataclasses.replace(opts, eps=IMAGE_EPS), None
    eps = round(VECTOR_EPS_SHARE * stats.rms_radius, 4)
    note = (
        f"method.eps = {eps:g} (vectors: {VECTOR_EPS_SHARE} x the rows' RMS distance from their mean, "
        f"{stats.rms_radius:.3g}; set it to choose another)"
    )
    return dataclasses.replace(opts, eps=eps), note


@register_method(
    "vat",
    options=VATOptions,
    uses_unlabeled=lambda o: o.on != "labeled",
    mu=1,
    unsup_term="vat",
    data_defaults=vat_data_defaults,
    description="cross-entropy + virtual adversarial smoothness (+ optional entropy minimisation)",
)
def vat_step(model: nn.Module, batch: Batch, opts: VATOptions) -> dict[str, torch.Tensor]:
    if opts.on not in ("unlabeled", "labeled", "both"):
        raise ConfigError(f"method.on: '{opts.on}' is not one of unlabeled, labeled, both")
    if opts.probe not in ("fp32", "autocast"):
        raise ConfigError(f"method.probe: '{opts.probe}' is not one of fp32, autocast")
    logits_l, replay_l = replayable_pass(model, batch.x_l, opts.same_noise and opts.on == "labeled")  # (B, K)
    ce = cross_entropy(logits_l, batch.y_l)
    if opts.on == "labeled":
        x_vat, logits_vat, replay = batch.x_l, logits_l, replay_l
    else:
        assert batch.x_u is not None, "VAT on unlabelled images needs an unlabelled batch"
        x_vat = torch.cat([batch.x_l, batch.x_u]) if opts.on == "both" else batch.x_u  # (Bv, ...)
        # The clean prediction is a constant target: no graph unless entropy minimisation needs one. It is
        # taken over the very batch the perturbed passes see: under BatchNorm the labelled batch's own logits
        # (other batch statistics) would differ from it at zero perturbation.
        with torch.set_grad_enabled(opts.entmin > 0 or opts.balance > 0):
            logits_vat, replay = replayable_pass(model, x_vat, opts.same_noise)  # (Bv, K)
    xi = opts.xi if opts.xi is not None else DEFAULT_XI[opts.probe]
    eps = opts.eps if opts.eps is not None else IMAGE_EPS  # the engine fills it in from the data first
    lds = vat_loss(
        model,
        x_vat,
        logits_vat,
        xi=xi,
        eps=eps,
        power_iters=opts.power_iters,
        fp32_probe=opts.probe == "fp32",
        replay=replay,
    )
    loss = ce + opts.weight * ramp_up(batch.progress, opts.warmup) * lds
    terms = {"ce": ce.detach(), "vat": lds, "train_acc": accuracy(logits_l, batch.y_l)}
    if opts.entmin > 0:
        ent = entropy_from_logits(logits_vat)
        loss = loss + opts.entmin * ent
        terms["entropy"] = ent.detach()
    if opts.balance > 0:
        marginal = marginal_kl_to_uniform(logits_vat)
        loss = loss + opts.balance * marginal
        terms["balance"] = marginal.detach()
    return {"loss": loss, **terms}
