"""VAT's power iteration on the registered seed CNNs (not only on a tiny smooth network): one
iteration must point along H·d at the default probe size of each probe precision, at
initialisation and after training. The reference H·d is float64 and directional (a converged
finite difference along d): on images with a black background max-pool windows hold equal values
and ReLUs sit at their kink, where autograd's double backpropagation at r = 0 returns a Hessian the
KL does not have. Samples count where that reference converged (the curvature float64 resolves);
benchmarks/speed/vat_probe.py runs the same measurement on real MNIST over a grid of xi."""

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import halfway, measured
from sklearn.datasets import load_digits

from semireg.methods.vat import (
    DEFAULT_XI,
    frozen_running_stats,
    l2_normalize,
    vat_direction,
)
from semireg.models import build_model

SEED_CNNS = ("cnn_keras", "cnn_bn")
RANDOM_COSINE = 0.04  # the mean cosine of a random direction with H·d here (what a broken probe gives)


def bound(name: str, key: str, failure: float) -> float:
    """Halfway between `failure` and the lowest value measured, at either state (init, trained), over
    seeds 0-2 on the three CPU kinds (benchmarks/results/threshold-spread.json, case vat-probe)."""
    keys = [f"{name}/{key}"] if key == "fp32_minus_large_xi" else [f"{name}/{s}/{key}" for s in ("init", "trained")]
    return halfway(failure, min(measured("vat-probe", k)["lowest"] for k in keys))


def scaled_digits():
    """scikit-learn's digits, scaled to MNIST's 28x28 in [0, 1] with a black background."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8)
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    return x, torch.tensor(d.target)


@pytest.fixture(scope="module")
def digits28():
    return scaled_digits()


def kl64(target_logits, logits):
    log_p, log_q = F.log_softmax(target_logits, dim=1), F.log_softmax(logits, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def reference_hd(model, x, d, probe=1e-5):
    """(H d in float64, per-sample mask where the reference converged: cosine >= 0.999 with probe / 10)."""
    m64, x64, d64 = copy.deepcopy(model).double(), x.double(), d.double()
    with frozen_running_stats(m64):
        target = m64(x64).detach()
        grads = []
        for xi in (probe, probe / 10):
            r = (xi * d64).requires_grad_(True)
            (g,) = torch.autograd.grad(kl64(target, m64(x64 + r)).sum(), r)
            grads.append(g / xi)
    converged = F.cosine_similarity(grads[0].flatten(1), grads[1].flatten(1), dim=1) >= 0.999
    return grads[0], converged


def agreement(model, x, d, reference, xi, bf16):
    hd, converged = reference
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with cast, frozen_running_stats(model):
        d1 = vat_direction(model, x, model(x).detach().float(), xi=xi, power_iters=1, d=d, fp32=not bf16)
    cos = F.cosine_similarity(d1.double().flatten(1), hd.flatten(1), dim=1)
    return float(cos[converged].mean())


def train_briefly(model, x, y, steps=100):
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (100,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def probe_agreements(name, digits, seed=0):
    """Per state (init, trained): the share of samples whose exact H·d float64 resolves, and the mean cosine of
    one power iteration with it — fp32 and bf16 at their default probes, fp32 at a large one."""
    x_all, y_all = digits
    x = x_all[-32:]  # held out of the brief training below
    torch.manual_seed(seed)
    d = l2_normalize(torch.randn_like(x))
    model = build_model(name, (1, 28, 28), 10).train()
    measured = {}
    for state in ("init", "trained"):
        if state == "trained":
            train_briefly(model, x_all[:-32], y_all[:-32])
        reference = reference_hd(model, x, d)
        measured[state] = {
            "converged": float(reference[1].float().mean()),
            "fp32": agreement(model, x, d, reference, DEFAULT_XI["fp32"], bf16=False),
            "bf16": agreement(model, x, d, reference, DEFAULT_XI["autocast"], bf16=True),
            "fp32_large_xi": agreement(model, x, d, reference, 10.0, bf16=False),
        }
    return measured


@pytest.mark.parametrize("name", SEED_CNNS)
def test_one_power_iteration_points_along_hd_on_the_seed_cnns(name, digits28):
    measured_now = probe_agreements(name, digits28)
    for state, m in measured_now.items():
        assert m["converged"] >= bound(name, "converged", 0.0), (state, m)  # a curvature float64 resolves
        assert m["fp32"] >= bound(name, "fp32", RANDOM_COSINE), (state, m)
        # bf16 probes agree less and vary more across CPU kinds (native AMX kernels round otherwise than
        # emulated bf16) — why the default probe is fp32; still far from a random direction.
        assert m["bf16"] >= bound(name, "bf16", RANDOM_COSINE), (state, m)
    # A large probe leaves the quadratic regime of these ReLU/max-pool networks (at initialisation
    # above all): the default is chosen where the agreement is.
    mean = {k: sum(m[k] for m in measured_now.values()) / 2 for k in ("fp32", "fp32_large_xi")}
    assert mean["fp32"] - mean["fp32_large_xi"] > bound(name, "fp32_minus_large_xi", 0.0), measured_now


def test_the_probe_bounds_are_measured_on_every_cpu_kind():
    for name in SEED_CNNS:
        runs = measured("vat-probe", f"{name}/init/fp32")["runs"]
        assert {r["kind"] for r in runs} == {"amx", "avx512-bf16", "fp32-only"} and len(runs) >= 9
        assert bound(name, "fp32", RANDOM_COSINE) > 0.3  # a bound that a random direction misses by far


if __name__ == "__main__":  # one seed's measurements, one thread (the spread: benchmarks/qa/threshold_spread.py)
    torch.set_num_threads(1)
    for cnn in SEED_CNNS:
        for state, m in probe_agreements(cnn, scaled_digits()).items():
            print(cnn, state, {k: round(v, 3) for k, v in m.items()})
