"""scikit-learn's bundled 8x8 digits: the offline default, no file needed."""

from __future__ import annotations

import torch

from .arrays import ArrayDataset


def load_digits() -> ArrayDataset:
    from sklearn.datasets import load_digits as sklearn_digits  # lazy: sklearn costs ~2 s of start-up

    bunch = sklearn_digits()
    x = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)  # (1797, 1, 8, 8) in [0, 1]
    y = torch.from_numpy(bunch.target).long()
    return ArrayDataset(x, y, None, None, num_classes=10, name="digits")
