"""Issue 17 diagnosis: a class-whitened disentangle run's z with *exact* class statistics.

Loads a finished `mnist-disentangle` run trained with `method.z_norm=class-whiten`, replaces its running
class statistics by those of 20,000 training images' evaluation-mode codes (no lag, no noise), and reads
the label from the whitened mean z with the evaluation's probes (linear and MLP, 20,000 training codes ->
the 10,000 test codes). If the linear probe falls to chance and the MLP does not, the label sits in the
nonlinear structure of z, which no per-class mean/covariance map can remove.

    SEMIREG_DATA=../shared/data python benchmarks/disentangle_exact_whitening.py RUN_DIR
"""

import sys
from pathlib import Path

import torch

from semireg.config import method_options
from semireg.finished import finished_run
from semireg.systems import get_system
from semireg.systems.disentangle import class_moment_gap, codes, z_posterior
from semireg.systems.evaluation import linear_probe, mlp_probe
from semireg.traindata import data_from_config


def load_finished(run: Path):
    """(data, options, system) of a finished mnist-disentangle run, with its trained nets and loss state."""
    cfg, state = finished_run(run, "run")
    data, _ = data_from_config(cfg)
    opts = method_options(cfg)
    system = get_system("disentangle").build(data.in_shape, data.num_classes, opts, None)
    system.nets.load_state_dict(state["nets"])
    system.state.load_state_dict(state["loss_state"])
    return data, opts, system


def main(run: Path) -> None:
    torch.set_num_threads(2)  # the machine's two cores
    data, opts, system = load_finished(run)
    system.nets.eval()
    pick = torch.randperm(len(data.x_l), generator=torch.Generator().manual_seed(0))[:20000]
    x, y = data.x_l[pick], data.y_l[pick]
    x_test, y_test = data.eval_sets["test"]
    whitening = system.state["z_norm"]
    with torch.no_grad():
        raw = z_posterior(system.nets["enc_z"], x, opts)[0]  # (20000, dim_z), evaluation mode
        lag = [float((raw[y == c].mean(0) - whitening.mean[c]).abs().max()) for c in range(data.num_classes)]
        print(
            "running statistics: largest |class mean of these codes - running class mean| per class:",
            [round(v, 3) for v in lag],
        )
        print(
            "running covariance of class 0, eigenvalues:",
            [round(float(v), 5) for v in torch.linalg.eigvalsh(whitening.cov[0])],
        )
        _, z_running = codes(system.nets, x_test, opts, state=system.state)
        print(
            "with the running statistics: linear probe",
            linear_probe(codes(system.nets, x, opts, state=system.state)[1], y, z_running, y_test),
        )
        whitening.momentum = 1.0  # the statistics become exactly those of these codes
        whitening.update(raw, y)
        _, z_train = codes(system.nets, x, opts, state=system.state)  # class read from s, as evaluation does
        _, z_test = codes(system.nets, x_test, opts, state=system.state)
    gap = lambda z, labels: [round(float(v), 4) for v in class_moment_gap(z, labels)]
    print("class-moment gap (between share, second-moment gap): train", gap(z_train, y), "test", gap(z_test, y_test))
    print("linear probe, whitened mean z:", linear_probe(z_train, y, z_test, y_test))
    print("MLP probe, whitened mean z:", mlp_probe(z_train, y, z_test, y_test, data.num_classes, epochs=30))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
