"""Data sets held in memory as tensors, semi-supervised splits, and on-device batch sampling."""

from .arrays import ArrayDataset, as_images
from .registry import load_dataset, resolve_data_dir
from .sampling import IndexSampler
from .splits import Split, make_split, official_test_subset

__all__ = [
    "ArrayDataset",
    "IndexSampler",
    "Split",
    "as_images",
    "load_dataset",
    "make_split",
    "official_test_subset",
    "resolve_data_dir",
]
