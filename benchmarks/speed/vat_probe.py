"""How well VAT's power iteration finds H·d on the registered seed CNNs, per precision and probe size xi.

For 64 MNIST test images, one power iteration from a fixed random unit direction d (per image) is
compared, by cosine, with the Hessian-vector product H·d of the batch's KL near r = 0, computed in
float64 as a converged finite difference (see exact_hvp; BatchNorm with batch statistics, as VAT's
perturbed passes run). Models: cnn_keras and cnn_bn at initialisation and after 150 supervised steps on 1,000
MNIST training images. The probe runs in float32 (`probe=fp32`) or in bf16 autocast (`probe=autocast`).

Samples are scored only where their curvature is resolvable: where the float64 reference itself
converged (cosine >= 0.999 between the finite differences at probe 1e-5 and 1e-6), as
tests/test_vat_probe.py selects them. Per (precision, xi) the script prints the mean and the 10th
percentile of the cosine over those samples, and the mean over all.

    python benchmarks/speed/vat_probe.py [--data-dir ../shared/data] [--out benchmarks/results/vat-probe.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _timing
from _timing import header, write

from semireg.data.mnist import load_mnist
from semireg.methods.vat import frozen_running_stats, l2_normalize, vat_direction
from semireg.models import build_model

XIS = (0.1, 0.3, 1.0, 3.0, 10.0)
CONVERGED = 0.999  # per-sample cosine of the float64 reference with itself at a 10x smaller probe


def kl64(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(p || q) in the logits' own dtype (semireg's kl_from_logits computes in float32)."""
    log_p, log_q = F.log_softmax(target_logits, dim=1), F.log_softmax(logits, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def exact_hvp(
    model, x: torch.Tensor, d: torch.Tensor, probe: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(H d, d^T H d per sample, agreement per sample) of sum_i KL(p(x_i) || p(x_i + r_i)) near r = 0, in float64.

    Not by double backpropagation at r = 0: MNIST's black background gives max-pool windows of
    equal values (and ReLUs at their kink), where the KL is not twice differentiable and autograd's
    tie-breaking gives a Hessian the function does not have (cosine 0.1-0.5 with every finite
    difference). The reference is the directional one VAT itself approximates: the float64 gradient
    at r = probe * d, divided by probe, which any tie along d resolves. `agreement` is its cosine
    with the same at probe / 10 (converged when ~1).
    """
    m64 = copy.deepcopy(model).double()
    x64, d64 = x.double(), d.double()

    def grad_at(xi: float) -> torch.Tensor:
        r = (xi * d64).requires_grad_(True)
        (g,) = torch.autograd.grad(kl64(target, m64(x64 + r)).sum(), r)
        return g / xi

    with frozen_running_stats(m64):
        target = m64(x64).detach()
        hd, check = grad_at(probe), grad_at(probe / 10)
    agreement = F.cosine_similarity(hd.flatten(1), check.flatten(1), dim=1).float()  # (B,)
    return hd, (hd * d64).flatten(1).sum(1), agreement


def direction(model, x: torch.Tensor, d: torch.Tensor, xi: float, bf16: bool) -> torch.Tensor:
    """One power iteration from d as VAT runs it, with the clean logits of the same precision."""
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with cast, frozen_running_stats(model):
        logits = model(x).detach().float()
        return vat_direction(model, x, logits, xi=xi, power_iters=1, d=d, fp32=not bf16)


def trained(model, x: torch.Tensor, y: torch.Tensor, steps: int = 150) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (100,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def measure(model, x: torch.Tensor, d: torch.Tensor) -> dict:
    hd, curvature, agreement = exact_hvp(model, x, d)
    out = {
        "curvature_quantiles": torch.quantile(curvature.float(), torch.tensor([0.1, 0.5, 0.9])).tolist(),
        "converged": float((agreement >= CONVERGED).float().mean()),
    }
    resolvable = agreement >= CONVERGED
    for name, bf16 in (("fp32", False), ("bf16", True)):
        for xi in XIS:
            d1 = direction(model, x, d, xi, bf16)
            cos = F.cosine_similarity(d1.double().flatten(1), hd.flatten(1), dim=1).float()
            sel = cos[resolvable]
            out[f"{name}@{xi}"] = {
                "mean_cos_all": float(cos.mean()),
                "mean_cos": float(sel.mean()) if len(sel) else None,
                "p10_cos": float(torch.quantile(sel, 0.1)) if len(sel) else None,
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("SEMIREG_DATA", "../shared/data"))
    ap.add_argument("--out", default="benchmarks/results/vat-probe.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = load_mnist([Path(args.data_dir) / "mnist", Path(args.data_dir)])
    x, x_train, y_train = data.x_test[:64], data.x_train[:1000], data.y_train[:1000]
    torch.manual_seed(0)
    d0 = l2_normalize(torch.randn_like(x))
    results = {"header": header(), "xis": XIS, "converged": CONVERGED}
    for name in ("cnn_keras", "cnn_bn"):
        torch.manual_seed(0)
        model = build_model(name, (1, 28, 28), 10).train()
        for state in ("init", "trained"):
            if state == "trained":
                trained(model, x_train, y_train)
            r = results[f"{name}/{state}"] = measure(model, x, d0)
            print(
                f"{name} {state}: curvature d^T H d quantiles 10/50/90 % "
                + ", ".join(f"{q:.2e}" for q in r["curvature_quantiles"])
                + f"; float64 reference converged for {100 * r['converged']:.0f} % of the samples"
            )
            for key, v in r.items():
                if "@" in key:
                    print(
                        f"  {key:10s} cos mean {v['mean_cos'] or float('nan'):.3f}"
                        f"  p10 {v['p10_cos'] or float('nan'):.3f}  (all samples: mean {v['mean_cos_all']:.3f})"
                    )
    pairs = [k for k in results if "/" in k]
    best = {}
    for name in ("fp32", "bf16"):
        means = {xi: sum(results[p][f"{name}@{xi}"]["mean_cos"] or 0.0 for p in pairs) / len(pairs) for xi in XIS}
        best[name] = max(means, key=means.get)
        print(
            f"{name}: mean cosine over the {len(pairs)} (model, state) pairs: "
            + ", ".join(f"xi {xi} {m:.2f}" for xi, m in means.items())
            + f"  -> best xi {best[name]}"
        )
    results["best_xi"] = best
    write(args.out, results)


if __name__ == "__main__":
    main()
