"""Corruption robustness: CIFAR-10-C generated with the reference constants, or the released files."""

from .corruptions import CORRUPTIONS, CORRUPTIONS_15, CORRUPTIONS_EXTRA, corrupt
from .evaluate import robustness_summary, run_robustness

__all__ = ["CORRUPTIONS", "CORRUPTIONS_15", "CORRUPTIONS_EXTRA", "corrupt", "run_robustness", "robustness_summary"]
