"""Issue 17 diagnosis: does Enc_z's dropout hide from the adversary the label that the probes read?

In training, the adversary and Enc_z's adversarial term read the posterior mean computed with Enc_z in training
mode (dropout on); the evaluation's probes read it in evaluation mode (dropout off). Noise hides the label
(sampled z: 11-14 % against 50-56 % on the mean z), so dropout noise may too. This reads the label with the
evaluation's MLP probe (20,000 training codes -> the 10,000 test codes) from the mean z in both modes.

    SEMIREG_DATA=../shared/data python benchmarks/disentangle_dropout_view.py RUN_DIR
"""

import sys
from pathlib import Path

import torch
from disentangle_exact_whitening import load_finished  # this folder's script: sys.path[0] when run as documented

from semireg.systems.disentangle import z_posterior
from semireg.systems.evaluation import batched, linear_probe, mlp_probe


def mean_codes(enc_z: torch.nn.Module, x: torch.Tensor, opts, training: bool) -> torch.Tensor:
    """(N, dim_z) posterior means with Enc_z in training mode (one dropout draw per image) or evaluation mode."""
    enc_z.train(training)
    with torch.no_grad():
        return batched(lambda part: z_posterior(enc_z, part, opts)[0], x)


def main(run: Path) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data, opts, system = load_finished(run)
    pick = torch.randperm(len(data.x_l), generator=torch.Generator().manual_seed(0))[:20000]
    x, y = data.x_l[pick], data.y_l[pick]
    x_test, y_test = data.eval_sets["test"]
    print(f"{run}: enc_dropout {opts.enc_dropout}")
    for training in (False, True):
        z_train, z_test = (
            mean_codes(system.nets["enc_z"], x, opts, training),
            mean_codes(system.nets["enc_z"], x_test, opts, training),
        )
        mode = "training mode (dropout on)" if training else "evaluation mode"
        print(
            f"mean z, {mode}: MLP probe {100 * mlp_probe(z_train, y, z_test, y_test, data.num_classes, epochs=30):.2f} %, "
            f"linear {100 * linear_probe(z_train, y, z_test, y_test):.2f} %"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
