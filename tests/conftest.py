import os
from pathlib import Path

import pytest
import torch

# Tests and CI read the real data sets from ../shared/data beside the checkout; nothing downloads.
# The measured spread behind the bounds of the real-run tests outside test_ssl_real.py / test_mnist_real.py:
# every case over training seeds 0-2 on the three CPU kinds' numeric paths (AMX; AVX-512 BF16 and
# float32-only emulated by limiting the kernels' instruction sets), at the precision `auto` gives each.
# Written by `python benchmarks/qa/threshold_spread.py --summarize benchmarks/results/threshold-spread/runs.jsonl`.
THRESHOLD_SPREAD_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "threshold-spread.json"


def measured(case: str, key: str) -> dict:
    """{"lowest", "highest", "n", "runs"} of one measurement of one case of the spread."""
    import json

    return json.loads(THRESHOLD_SPREAD_FILE.read_text())[case][key]


def halfway(failure: float, worst: float) -> float:
    """A bound halfway between what a failure gives (chance, no gain) and the worst measured run: every
    measured run clears it by half its distance from failure, and a failure misses it by as much."""
    return failure + (worst - failure) / 2


SHARED_DATA = Path(os.environ.get("SEMIREG_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
os.environ.setdefault("SEMIREG_DATA", str(SHARED_DATA))

# `make test` runs the suite in one pytest-xdist worker per core: each worker (and every process it
# starts) then computes with one thread, since two workers with two threads each on two cores spend
# more time spin-waiting than computing. Real-data tests ask for `TRAIN_THREADS`: one thread in any
# pytest run, since their bars were measured with one (benchmarks/qa/*_spread.py) and a thread count is
# one more summation order (Pi-model's short MNIST run: 0.9485 with one thread, 0.905 with two).
IN_WORKER = "PYTEST_XDIST_WORKER" in os.environ
TRAIN_THREADS = 1
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


# Seconds the longest tests took in one worker of `make test` on an fp32-only CPU (`pytest -n 2 --durations=0`
# with other runs sharing the cores, scaled where a test's budget changed since). Only the order of the suite depends on
# them: a stale figure costs balance, never a result. Keys are node ids or their beginnings (the longest match wins).
COST_S = {
    # The real-data budgets, scaled from their seconds on an fp32-only CPU at the budgets before (steps x mu).
    "test_ssl_real.py::test_a_short_run_beats_the_labels_only_baseline[pimodel]": 550,
    "test_ssl_real.py::test_a_short_run_beats_the_labels_only_baseline[pseudolabel]": 670,
    "test_ssl_real.py::test_a_short_run_beats_the_labels_only_baseline[meanteacher]": 360,
    "test_ssl_real.py::test_a_short_run_beats_the_labels_only_baseline[fixmatch]": 360,
    "test_ssl_real.py::test_a_short_run_beats_the_labels_only_baseline[uda]": 240,
    "test_ssl_real.py::test_a_short_run_beats_the_labels_only_baseline": 120,
    "test_faults.py::test_sigkill_at_random_steps": 265,
    "test_systems_real.py": 230,
    "test_mnist_real.py": 215,
    "test_cifar_real.py": 170,
    "test_cli.py::test_demo_runs_offline": 180,
    "test_speed_options.py::test_bf16": 125,
    "test_lock.py::test_a_second_writer": 105,
    "test_readme.py::test_readme_own_data_commands_run": 90,
    "test_vat_probe.py::test_one_power_iteration": 70,
    "test_readme.py::test_readme_python_examples_run": 50,
    "test_cli.py::test_multi_network_recipes_through_the_cli": 35,
    "test_distributed.py::test_batchnorm_model": 77,
    "test_distributed.py::test_resume_under_another_number_of_processes": 55,
    "test_distributed.py::test_cli_resume": 46,
    "test_speed_options.py": 20,
}
# Tests that share a once-per-session fixture behind a file lock: a second worker needing it while the first
# builds it would wait idle, so each group runs in one worker.
SHARED_SETUP = {"real_cifar": 90, "test_distributed.py": 110}


def _cost(item) -> float:
    nodeid = item.nodeid.removeprefix("tests/")
    keys = [k for k in COST_S if nodeid.startswith(k)]
    return COST_S[max(keys, key=len)] if keys else 1.0


def _group(item) -> str:
    if "real_cifar" in getattr(item, "fixturenames", ()):
        return "real_cifar"
    return "test_distributed.py" if item.nodeid.startswith("tests/test_distributed.py") else item.nodeid


def balanced_order(items: list, workers: int) -> list:
    """The items reordered for pytest-xdist's work stealing with `workers` workers, which first hands worker i
    the i-th contiguous share of the list (len // workers) and later steals from the tails of the queues. The
    groups of tests are dealt longest first to the worker with the least expected time (LPT), each worker's
    share starts with its long tests, and the short ones fill the shares to their exact sizes: the long runs
    start at once on every worker, and what is stolen at the end is short."""
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(_group(item), []).append(item)
    cost = {g: sum(map(_cost, members)) + SHARED_SETUP.get(g, 0) for g, members in groups.items()}
    # long: a member with a measured cost, or a shared setup (every other test counts 1 s)
    long_groups = sorted((g for g in groups if cost[g] > len(groups[g])), key=lambda g: -cost[g])
    shares: list[list] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for g in long_groups:
        w = load.index(min(load))
        shares[w].extend(sorted(groups[g], key=lambda it: -_cost(it)))
        load[w] += cost[g]
    short = [it for g, members in groups.items() if g not in long_groups for it in members]
    sizes = [len(items) // workers] * (workers - 1)
    sizes.append(len(items) - sum(sizes))
    for w in range(workers):
        room = max(0, sizes[w] - len(shares[w]))
        shares[w].extend(short[:room])
        short = short[room:]
    shares[-1].extend(short)  # a share longer than its size (many long tests) pushes the rest to the last
    return [it for share in shares for it in share]


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (every worker collects, and must order alike): `balanced_order`. Without it, the
    order pytest collected."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        items[:] = balanced_order(items, workers)
