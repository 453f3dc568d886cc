"""Semi-supervised splits, reproducible from a seed.

- `holdout` (seed 001): `n_test` images are held out of the training set as the test set; the
  labelled and unlabelled sets are drawn from the rest (MNIST: 10,000 / 100 / 49,900).
- `standard`: the official test set (a fixed `n_test` of its images when 0 < `n_test` < its size,
  the same for every seed); labelled (and validation) images drawn from the training set,
  the unlabelled set is the remaining training images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError


@dataclass
class Split:
    """Indices into the training arrays; `test` is None when the official test set is used."""

    labeled: np.ndarray
    unlabeled: np.ndarray
    val: np.ndarray
    test: np.ndarray | None

    def save(self, path: Path) -> None:
        arrays = {"labeled": self.labeled, "unlabeled": self.unlabeled, "val": self.val}
        if self.test is not None:
            arrays["test"] = self.test
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> Split:
        with np.load(path, allow_pickle=False) as f:
            return cls(f["labeled"], f["unlabeled"], f["val"], f["test"] if "test" in f.files else None)

    def summary(self) -> dict[str, int]:
        return {
            "labeled": len(self.labeled),
            "unlabeled": len(self.unlabeled),
            "val": len(self.val),
            "test_held_out": -1 if self.test is None else len(self.test),
        }


def _draw_labeled(
    rng: np.random.Generator, pool: np.ndarray, y: np.ndarray, n: int, balanced: bool, num_classes: int
) -> np.ndarray:
    if n < 0:
        return rng.permutation(pool)  # every labelled sample left, balanced or not
    if n > len(pool):
        raise ConfigError(f"data.n_labeled={n} is larger than the {len(pool)} labelled training samples available")
    if not balanced:
        return rng.choice(pool, size=n, replace=False)
    if n % num_classes:
        raise ConfigError(f"data.n_labeled={n} is not a multiple of the {num_classes} classes (balanced split)")
    per_class = n // num_classes
    picks = []
    for c in range(num_classes):
        members = pool[y[pool] == c]
        if len(members) < per_class:
            raise ConfigError(f"class {c} has {len(members)} images, fewer than the {per_class} a balanced split needs")
        picks.append(rng.choice(members, size=per_class, replace=False))
    return rng.permutation(np.concatenate(picks))


def make_split(
    y_train: np.ndarray,
    num_classes: int,
    *,
    protocol: str,
    n_labeled: int,
    n_unlabeled: int = -1,
    n_val: int = 0,
    n_test: int = 10000,
    balanced: bool = False,
    has_test_set: bool = True,
    seed: int = 0,
) -> Split:
    rng = np.random.default_rng(seed)
    pool = rng.permutation(len(y_train))
    test = None
    if (protocol == "holdout" or not has_test_set) and n_test > 0:
        if n_test >= len(pool):
            raise ConfigError(f"data.n_test={n_test} leaves no training images out of {len(pool)}")
        test, pool = np.sort(pool[:n_test]), pool[n_test:]
    if n_val:
        if n_val >= len(pool):
            raise ConfigError(f"data.n_val={n_val} leaves no training images")
        val, pool = np.sort(pool[:n_val]), pool[n_val:]
    else:
        val = np.zeros(0, dtype=np.int64)
    labeled = _draw_labeled(rng, pool, y_train, n_labeled, balanced, num_classes)
    rest = np.setdiff1d(pool, labeled)
    rest = rng.permutation(rest)
    if n_unlabeled >= 0:
        if n_unlabeled > len(rest):
            raise ConfigError(f"data.n_unlabeled={n_unlabeled} is larger than the {len(rest)} images left")
        rest = rest[:n_unlabeled]
    return Split(
        labeled.astype(np.int64),
        np.sort(rest).astype(np.int64),
        val.astype(np.int64),
        None if test is None else test.astype(np.int64),
    )


def official_test_subset(n_official: int, n_test: int) -> np.ndarray | None:
    """Which images of an official test set of `n_official` to evaluate on under protocol `standard`:
    None for all of them (`n_test` 0 — "hold none out", as the README's own-data commands say — or
    at least its size), else `n_test` sorted indices: a cheaper test set for short runs, the same for
    every seed and method (so their figures compare on the same images) and on resume."""
    if n_test < 0:
        raise ConfigError(f"data.n_test={n_test} must be >= 0")
    if n_test == 0 or n_test >= n_official:
        return None
    # A generator of its own, not the split's: the labelled draw stays the same whatever n_test is.
    rng = np.random.default_rng([n_official, n_test])
    return np.sort(rng.choice(n_official, size=n_test, replace=False)).astype(np.int64)
