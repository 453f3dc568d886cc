"""Other budgets for the MNIST-100 short runs of tests/test_ssl_real.py: each METHOD:STEPS:MU argument trains that
method as the test does (one thread, the 2,000 test images) and prints its test accuracy, to compare with the
file's LABELS_ONLY at the same steps. Usage: python benchmarks/ssl_short_budgets.py pimodel:600:1 pseudolabel:400:2"""

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_ssl_real as short  # noqa: E402  (the test's own config and checks, not a copy)

if __name__ == "__main__":
    short.SHORT["train.threads"] = 1  # as in the suite's xdist workers
    torch.set_num_threads(1)
    for arg in sys.argv[1:]:
        method, steps, mu = arg.split(":")
        acc = short.accuracy_of(short.short_config(method, int(steps), int(mu)), Path(tempfile.mkdtemp()) / method)
        print(
            f"{method}, {steps} steps, mu {mu}: {acc:.4f} (labels only {short.LABELS_ONLY[int(steps)]:.4f})", flush=True
        )
