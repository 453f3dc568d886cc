import os
from pathlib import Path

import pytest
import torch

# Tests and CI read the real data sets from ../shared/data beside the checkout; nothing downloads.
SHARED_DATA = Path(os.environ.get("SEMIREG_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
os.environ.setdefault("SEMIREG_DATA", str(SHARED_DATA))

# `make test` runs the suite in one pytest-xdist worker per core: each worker (and every process it
# starts) then computes with one thread, since two workers with two threads each on two cores spend
# more time spin-waiting than computing. Real-data tests ask for `TRAIN_THREADS`.
IN_WORKER = "PYTEST_XDIST_WORKER" in os.environ
TRAIN_THREADS = 1 if IN_WORKER else 2
if IN_WORKER:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Each test gets its own cache directory and a fixed seed; threads kept small for CI."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)


def _present(path: Path) -> bool:
    # CI sets SEMIREG_REQUIRE_DATA=1: there a missing data set fails the run instead of skipping.
    if not path.exists() and os.environ.get("SEMIREG_REQUIRE_DATA") == "1":
        raise FileNotFoundError(f"{path} is required (SEMIREG_REQUIRE_DATA=1) but missing")
    return path.exists()


def mnist_available() -> bool:
    return _present(SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz")


def cifar_archive() -> Path:
    path = SHARED_DATA / "cifar10" / "cifar10-jpeg.tar.gz"
    _present(path)
    return path


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory):
    # Under pytest-xdist, one directory for the whole session (the workers' base directories share
    # this parent), so the CIFAR-10 decode is done by one worker, not by each (~25 s of CPU each).
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if IN_WORKER else base) / "shared-cache"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture
def real_cifar(_session_cache, monkeypatch):
    """The shared JPEG copy of CIFAR-10, decoded once per test session (the decode takes ~30 s)."""
    path = cifar_archive()
    if not path.exists():
        pytest.skip("../shared/data/cifar10 not present")
    monkeypatch.setenv("XDG_CACHE_HOME", str(_session_cache))
    from filelock import FileLock  # a dependency of torch

    from semireg.data import load_dataset

    with FileLock(str(_session_cache / "cifar10.lock")):  # the first worker decodes, the other reads its cache
        return load_dataset("cifar10-jpeg", str(SHARED_DATA))


def pytest_collection_modifyitems(config, items):
    """The slow real-data tests first (stable order otherwise): under xdist's work stealing the
    long runs then start at once and the short tests fill the other worker around them, instead
    of one worker finishing the long tail alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
