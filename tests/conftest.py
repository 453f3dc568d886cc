import os
from pathlib import Path

import pytest
import torch

# Tests and CI read the real data sets from ../shared/data beside the checkout; nothing downloads.
SHARED_DATA = Path(os.environ.get("SEMIREG_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
os.environ.setdefault("SEMIREG_DATA", str(SHARED_DATA))


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Each test gets its own cache directory and a fixed seed; threads kept small for CI."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)


def mnist_available() -> bool:
    return (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").exists()


def cifar_archive() -> Path:
    return SHARED_DATA / "cifar10" / "cifar10-jpeg.tar.gz"
