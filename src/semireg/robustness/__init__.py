"""Corruption robustness: CIFAR-10-C generated with the reference constants, or the released files."""

from .corruptions import CORRUPTIONS, CORRUPTIONS_15, CORRUPTIONS_EXTRA, corrupt
from .evaluate import run_robustness, robustness_summary

__all__ = ["CORRUPTIONS", "CORRUPTIONS_15", "CORRUPTIONS_EXTRA", "corrupt", "run_robustness", "robustness_summary"]
