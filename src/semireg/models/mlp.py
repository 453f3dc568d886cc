"""The VAT paper's MLP (784-1200-600-300-150-150-10, a norm layer after every hidden layer).

On images (flattened) the norm layer is BatchNorm, as in the paper. On rows of features it is
LayerNorm: with a few labelled rows, the semi-supervised methods that forward labelled and
unlabelled rows as one batch (Pi-model, Mean Teacher, pseudo-labelling) train under BatchNorm
statistics their evaluation never sees, and lost 4-22 points to labels only on digits and wine;
with LayerNorm a row's output does not depend on its batch (benchmarks/reproduce/vector_defaults.py).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from .registry import register_model

VAT_HIDDEN = [1200, 600, 300, 150, 150]
# The layer after each hidden Linear, by `norm`; "" is BatchNorm on images, LayerNorm on vectors.
NORMS = {
    "batch": lambda n, affine: nn.BatchNorm1d(n, affine=affine),
    "layer": lambda n, affine: nn.LayerNorm(n, elementwise_affine=affine),
    "none": lambda n, affine: nn.Identity(),
}


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) to every activation in training mode; the identity in evaluation.

    `bank` > 0: the noise is a window, at a uniformly drawn offset, of `bank` values drawn once from
    N(0, std^2) when the layer is built, instead of fresh values at every pass. torch's CPU generator
    is one serial Mersenne Twister: on the VAT paper's MLP the fresh draws were 16-18 % of a VAT +
    entropy-minimisation step under bf16 on 2 cores, and the window made that step 1.15-1.19x faster
    (benchmarks/speed/noise_bank.py). Each window is i.i.d. N(0, std^2) within itself; windows of
    two passes share values only where they overlap, and then at shifted places (other rows, other
    units) unless their offsets are equal: a bank many times the largest activation keeps the passes
    practically independent. A pass larger than the bank draws fresh values.
    """

    def __init__(self, std: float, bank: int = 0) -> None:
        super().__init__()
        self.std = std
        self.bank_size = bank
        # Drawn here, from the generator the run seeded, so that a resumed run rebuilds the same bank.
        values = torch.empty(bank).normal_(0.0, std) if bank else torch.empty(0)  # (bank,) float32
        self.register_buffer("bank", values, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        n = x.numel()
        if 0 < n <= self.bank_size:
            # The offset comes from the CPU generator as a host integer: no device sync on any device.
            start = int(torch.randint(0, self.bank_size - n + 1, ()))
            window = self.bank[start : start + n].view(x.shape)  # (B, ...) float32, a view of the bank
            return window.to(x.dtype, copy=True).add_(x)  # a copy: the bank itself is never written
        # Drawn in float32 and cast: torch's CPU normal_ is vectorised for float32 only; drawn in x's dtype
        # under bf16 autocast the noise took 1.47x as long and the VAT + entropy-minimisation step on the
        # VAT paper's MLP 1.06-1.08x (benchmarks/speed/gaussian_noise.py, 2-core AMX CPU). In float32 the
        # values are the same as x + std * randn_like(x).
        noise = torch.empty(x.shape, device=x.device).normal_(0.0, self.std)  # (B, ...) float32
        return noise.to(x.dtype).add_(x)

    def extra_repr(self) -> str:
        return f"std={self.std}" + (f", bank={self.bank_size}" if self.bank_size else "")


@register_model("mlp")
def mlp(
    in_shape: tuple[int, ...],
    num_classes: int,
    dropout: float = 0.0,
    hidden: list[int] | None = None,
    norm: str = "",
    logit_bn: bool = False,
    plain_norm: bool = False,
    noise: float = 0.0,
    input_noise: float = 0.0,
    noise_bank: int = 0,
) -> nn.Module:
    """`noise`: the standard deviation of Gaussian noise added to every hidden layer's output while
    training, as the VAT authors' permutation-invariant MNIST network has (0.5; Salimans et al. 2016);
    `input_noise`: the same on the (flattened) input (0.3 in Salimans et al.'s discriminator);
    `noise_bank`: > 0, each noise layer adds windows of that many values drawn once (GaussianNoise)."""
    if noise_bank < 0:
        raise ConfigError(f"model.noise_bank: {noise_bank} is negative (0: fresh draws at every pass)")
    if norm and norm not in NORMS:
        raise ConfigError(f"model.norm: '{norm}' is not one of {', '.join(NORMS)}")
    norm = norm or ("layer" if len(in_shape) == 1 else "batch")
    affine = not plain_norm
    sizes = [math.prod(in_shape)] + list(hidden or VAT_HIDDEN)
    layers: list[nn.Module] = [nn.Flatten()]
    if input_noise:
        layers.append(GaussianNoise(input_noise, noise_bank))
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), NORMS[norm](n_out, affine), nn.ReLU()]
        if noise:
            layers.append(GaussianNoise(noise, noise_bank))
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(sizes[-1], num_classes))
    if logit_bn:
        layers.append(nn.BatchNorm1d(num_classes, affine=affine))
    return nn.Sequential(*layers)
