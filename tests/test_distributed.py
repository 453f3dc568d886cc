"""Data-parallel training on 2 CPU processes (gloo), checked against one process with the same
global batch. Without BatchNorm, augmentation or random directions a data-parallel step is the same
arithmetic as a single-process one, so the weights must agree to float rounding; where those differ
(BatchNorm over each rank's share, each rank's own random draws) the accuracy must agree."""

import json
import shutil

import pytest
import torch
from conftest import IN_WORKER, halfway, measured
from filelock import FileLock  # a dependency of torch
from torch import nn

from semireg import distributed
from semireg.cli import _resume_config
from semireg.config import from_kwargs
from semireg.engine import train, train_rank
from semireg.errors import ConfigError
from semireg.methods import METHODS
from semireg.traindata import TrainData

# The only registered method whose step draws random numbers of its own (VAT's random start of the
# power iteration); on two ranks its second half of the batch gets other draws than in one process.
DRAWS_RANDOM_NUMBERS = {"vat"}
WEIGHT_TOLERANCE = 1e-5  # float32 rounding of a sum taken in another order (measured ~1e-7)
FLOAT32_EPS = 2.0**-24  # unit roundoff of float32
STEPS, LR, MOMENTUM = 10, 1e-2, 0.9
# The longest float32 sum in a step of plain_net: the first conv's weight gradient adds one term per
# pixel (8x8) of every image in the step (labelled + two views of the unlabelled batch, 8 + 2*16).
LONGEST_SUM = (8 + 2 * 16) * 8 * 8


def summation_order_tolerance(momentum_buffers) -> float:
    """How far two runs of the same arithmetic, summed in other orders, may drift apart in weights.

    A sum of n float32 terms taken in any order is off by at most gamma_n = n*u/(1 - n*u) times
    the sum of their magnitudes (Higham, Accuracy and Stability of Numerical Algorithms, 4.2); SGD
    moves each weight by lr times the momentum buffer, which the gradient error enters with weight
    at most 1/(1 - momentum). Over STEPS steps, both runs off in opposite directions, the weights
    differ by at most 2 * STEPS * LR/(1 - MOMENTUM) * gamma_n * G, with G the gradient scale, read
    from the momentum buffers (at most G/(1 - momentum) themselves). This is why the comparison uses
    SGD: Adam divides each gradient by its own running magnitude, so where a coordinate's true gradient
    is 0 (a ReLU unit dead for the labelled images), rounding noise of 1e-9 becomes a step of lr."""
    n_u = LONGEST_SUM * FLOAT32_EPS
    gamma = n_u / (1 - n_u)
    scale = max(float(buffer.abs().max()) for buffer in momentum_buffers)
    return 2 * STEPS * LR / (1 - MOMENTUM) * gamma * scale


def image_data(n=240, k=3) -> TrainData:
    g = torch.Generator().manual_seed(0)
    templates = torch.rand(k, 1, 8, 8, generator=g)
    y = torch.arange(n) % k
    x = (templates[y] + 0.3 * torch.rand(n, 1, 8, 8, generator=g)).clamp(0, 1)
    return TrainData(x_l=x[:24], y_l=y[:24], x_u=x[24:200], num_classes=k, eval_sets={"test": (x[200:], y[200:])})


def plain_net(k=3) -> nn.Module:
    """No BatchNorm and no dropout: its step on a split batch is the step on the whole batch."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, k))


def cfg_for(method: str, teacher: str = "", **kw):
    base = {
        "method": {"name": method},
        "model": {"name": "cnn_small", "hidden": [8]},
        "teacher": teacher,
        "train": {
            "steps": STEPS,
            "batch_size": 8,
            "unlabeled_batch_size": 16,
            "progress": False,
            "log_every": 2,
            "ema_decay": 0.9,
            "optimizer": "sgd",
            "lr": LR,
            "momentum": MOMENTUM,
            "threads": 1,
            "precision": "32-true",
        },  # the tolerance below is float32's
        "augment": {"ra_ops": 0},
    }  # no augmentation: the strong view is the weak one
    if "threshold" in {f for f in METHODS[method].options.__dataclass_fields__}:
        base["method"]["threshold"] = 0.5  # low enough that the unsupervised term and its state are active
    return from_kwargs(kw, base=base)


def _every_method(fabric, root: str, teacher: str) -> None:
    """Runs in each of the 2 spawned ranks: every registered method, one after the other."""
    for name in sorted(METHODS):
        cfg = cfg_for(name, teacher if METHODS[name].needs_teacher else "")
        train_rank(fabric, cfg, distributed_dir(root, name), plain_net(), image_data(), None, False, False)
    distributed.leave_process_group()


def distributed_dir(root, name):
    from pathlib import Path

    return Path(root) / "two" / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every method trained once in one process and once on two ranks (one spawn for all of them).
    Under pytest-xdist the tests below are spread over the workers; the first to need these runs
    trains them into this session's directory and the others read them (~45 s of CPU each time)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if IN_WORKER else base) / "ddp-runs"
    with FileLock(str(root) + ".lock"):
        if not (root / "done").exists():
            shutil.rmtree(root, ignore_errors=True)  # a worker that died half-way
            teacher = root / "teacher"
            train(cfg_for("supervised"), teacher, model=None, data=image_data())
            for name in sorted(METHODS):
                cfg = cfg_for(name, str(teacher) if METHODS[name].needs_teacher else "")
                train(cfg, root / "one" / name, model=plain_net(), data=image_data())
            fabric, spawn = distributed.make_fabric(cfg_for("supervised", devices=2).train)
            assert spawn
            fabric.launch(_every_method, str(root), str(teacher))
            (root / "done").touch()
    return root


def _load(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_two_processes_match_one_process_with_the_same_global_batch(runs, name):
    one, two = _load(runs / "one" / name), _load(runs / "two" / name)
    assert two["step"] == one["step"] == 10
    meta = json.loads((runs / "two" / name / "meta.json").read_text())
    assert meta["world_size"] == 2
    diffs = {k: float((one["model"][k] - two["model"][k]).abs().max()) for k in one["model"]}
    tolerance = summation_order_tolerance(s["momentum_buffer"] for s in one["optimizer"]["state"].values())
    print(f"{name}: max weight difference {max(diffs.values()):.2e}, tolerance {tolerance:.2e}")
    if name in DRAWS_RANDOM_NUMBERS:
        assert max(diffs.values()) > tolerance  # other random directions on rank 1: not identical ...
        assert all(torch.isfinite(v).all() for v in two["model"].values())  # ... but trained
        return
    assert max(diffs.values()) <= tolerance, diffs
    for key in one["ema"]:
        assert torch.allclose(one["ema"][key].float(), two["ema"][key].float(), atol=tolerance), key
    # Method state (FlexMatch's per-image labels, FreeMatch's thresholds, alignment) is folded in from
    # the gathered global batch, so it is the single-process state, not rank 0's half of it.
    for key, value in (one["method_state"] or {}).items():
        other = two["method_state"][key]
        if value.is_floating_point():
            assert torch.allclose(value, other, atol=tolerance), key
        else:
            assert torch.equal(value, other), key
    # Logged terms are means over both ranks: the single process's numbers.
    logs = [
        [json.loads(line) for line in (runs / which / name / "metrics.jsonl").read_text().splitlines()]
        for which in ("one", "two")
    ]
    for a, b in zip(*logs):
        if a["kind"] == "train":
            assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        else:
            assert a["accuracy"] == b["accuracy"]  # evaluation sharded over ranks, gathered


def test_flexmatch_state_really_is_used(runs):
    # Guard against a vacuous comparison above: the state moved away from its initial value.
    state = _load(runs / "two" / "flexmatch")["method_state"]
    assert (state["status.selected"] >= 0).any()


@pytest.mark.parametrize("first,second", [(2, 1), (1, 2)])
def test_resume_under_another_number_of_processes(tmp_path, first, second):
    """The sample order is global, so an interrupted run resumed with another process count reaches
    the weights of an uninterrupted single-process run (no BatchNorm, no augmentation)."""
    full = train(cfg_for("supervised", steps=12), tmp_path / "full", model=plain_net(), data=image_data())
    part = tmp_path / "part"
    train(cfg_for("supervised", steps=6, devices=first), part, model=plain_net(), data=image_data())
    resumed = train(
        cfg_for("supervised", steps=12, devices=second), part, model=plain_net(), data=image_data(), resume=True
    )
    assert resumed.metrics["steps"] == 12
    for (key, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=WEIGHT_TOLERANCE), key


def batchnorm_accuracies(seed=0, precision="auto") -> tuple[float, float]:
    """Held-out accuracy of a BatchNorm CNN trained with VAT and augmentation on one and on two processes
    (at the precision `auto` picks on this CPU, as a user gets it)."""
    base = {
        "data": {"dataset": "digits", "n_labeled": 1000, "n_test": 400},
        "model": {"name": "cnn_small"},
        "method": {"name": "vat", "eps": 1.0},
        "train": {
            "steps": 120,
            "batch_size": 32,
            "unlabeled_batch_size": 32,
            "lr": 3e-3,
            "progress": False,
            "threads": 1,
            "log_every": 20,
            "seed": seed,
            "precision": precision,
        },
        "augment": {"pad": 1},
    }
    one = train(from_kwargs({}, base=base))
    two = train(from_kwargs({"devices": 2}, base=base))
    return one.metrics["test"]["accuracy"], two.metrics["test"]["accuracy"]


def test_batchnorm_model_with_augmentation_reaches_the_same_accuracy_on_two_processes():
    """With BatchNorm (statistics of each rank's share, averaged at checkpoints) and augmentation
    (each rank its own draws) only the accuracy can agree, within the spread of seeds on held-out digits."""
    acc_one, acc_two = batchnorm_accuracies()
    # Measured over seeds 0-2 on the three CPU kinds (benchmarks/results/threshold-spread.json, ddp-bn).
    worst = min(measured("ddp-bn", k)["lowest"] for k in ("one_process", "two_processes"))
    assert min(acc_one, acc_two) > halfway(0.1, worst), (acc_one, acc_two)  # chance is 0.1
    # Two processes are one more draw of the random streams, as another seed is: the difference may be
    # as large as the seeds' own spread of one-process accuracy, plus the largest difference measured.
    one = measured("ddp-bn", "one_process")
    bound = one["highest"] - one["lowest"] + measured("ddp-bn", "abs_difference")["highest"]
    assert abs(acc_one - acc_two) < bound, (acc_one, acc_two, bound)


def test_global_batch_must_split_evenly():
    with pytest.raises(Exception, match="divisible"):
        train(cfg_for("supervised", batch_size=9, devices=2), model=plain_net(), data=image_data())


def test_systems_train_in_one_process(tmp_path):
    with pytest.raises(ConfigError, match="one process"):
        train(from_kwargs({"devices": 2}, base={"method": {"name": "began"}}))


def test_resume_may_change_how_a_run_runs_but_not_what_it_computes():
    saved = cfg_for("vat").to_dict()
    cfg = _resume_config(saved, {"devices": 2, "train.threads": 2})
    assert cfg.train.devices == 2 and cfg.train.threads == 2 and cfg.train.lr == saved["train"]["lr"]
    with pytest.raises(ConfigError, match="train.lr"):
        _resume_config(saved, {"lr": 0.5})


def test_cli_resume_under_two_processes(tmp_path, capsys):
    from semireg.cli import main

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        '[data]\ndataset = "digits"\nn_labeled = 200\nn_test = 200\n[model]\nname = "cnn_small"\n'
        "[train]\nsteps = 6\nbatch_size = 16\nprogress = false\nthreads = 1\ncheckpoint_every = 3\n"
    )
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--run-dir", str(run), "train.steps=3"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    cfg["train"]["steps"] = 6  # as if the first process had been stopped at its step-3 checkpoint
    (run / "config.json").write_text(json.dumps(cfg))
    assert main(["train", "--resume", str(run), "devices=2"]) == 0
    assert _load(run)["step"] == 6
    assert json.loads((run / "results.json").read_text())["world_size"] == 2
    assert main(["train", "--resume", str(run), "lr=0.5"]) == 2  # what a run computes is not changed on resume
    assert "only" in capsys.readouterr().err


def test_an_existing_run_is_refused_before_any_rank_starts(tmp_path):
    from semireg.errors import RunDirError

    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    with pytest.raises(RunDirError, match="--overwrite"):
        train(cfg_for("supervised", devices=2), run, model=plain_net(), data=image_data())
    assert [p.name for p in run.iterdir()] == ["keep.txt"]
