"""Fault drills: kill a training process with SIGKILL at random steps, resume it each time, and
check that it ends on the weights an uninterrupted run ends on. Used by the short test in CI
(tests/test_faults.py) and the long drill in benchmarks/qa/fault_drill.py; nothing here is on the
training path.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from semireg import rundir

# A short, deterministic CPU run: digits, MLP, VAT (its random directions come from the global
# torch generator, so a resume that lost any random state would show).
DRILL_ARGS = [
    "demo",
    "--variant",
    "vat",
    "--seeds",
    "0",
    "train.deterministic=true",
    "train.threads=1",
    "train.progress=false",
    "train.log_every=5",
    "train.checkpoint_every=15",
    "train.eval_every=100",
]


@dataclass
class Kill:
    target_step: int  # the drill waited for a log at or past this step, then a random delay
    logged_step: int  # last step in metrics.jsonl when the kill landed
    checkpoint_step: int  # the step the next resume started from
    tmp_left: bool  # a checkpoint.pt.tmp was lying there (killed during a checkpoint write)


@dataclass
class Drill:
    steps: int
    kills: list[Kill] = field(default_factory=list)
    restarts_from_scratch: int = 0
    identical: bool = False
    differing: list[str] = field(default_factory=list)
    metrics_identical: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "kills": [vars(k) for k in self.kills],
            "identical": self.identical,
            "differing": self.differing,
            "metrics_identical": self.metrics_identical,
            "restarts_from_scratch": self.restarts_from_scratch,
        }


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "semireg.cli", "train", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _last_step(metrics: Path) -> int:
    records = rundir.read_jsonl(metrics) if metrics.exists() else []
    return max((r.get("step", 0) for r in records), default=0)


def run_uninterrupted(run_dir: Path, steps: int) -> None:
    subprocess.run(
        _cli([*DRILL_ARGS, f"train.steps={steps}", "--run-dir", str(run_dir)]),
        check=True,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=1800,
    )


def _kill_at(cmd: list[str], run_dir: Path, target: int, delay: float, timeout: float = 600) -> bool:
    """Start `cmd`; SIGKILL it `delay` seconds after metrics.jsonl reaches `target`. True if killed."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if _last_step(run_dir / "metrics.jsonl") >= target:
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return False


def interrupted_run(run_dir: Path, steps: int, kills: int, seed: int) -> Drill:
    """Train `steps` steps, killed `kills` times at random steps and resumed each time."""
    rng = random.Random(seed)
    drill = Drill(steps=steps)
    fresh = _cli([*DRILL_ARGS, f"train.steps={steps}", "--run-dir", str(run_dir)])
    resume = _cli(["--resume", str(run_dir)])
    started = False
    for left in range(kills, 0, -1):
        done = _last_step(run_dir / "metrics.jsonl") if started else 0
        if done >= steps - 10:
            break
        # A random step in this kill's share of what is left, so that the kills spread over the run.
        target = done + rng.randint(1, max(1, (steps - 10 - done) // left))
        if not (run_dir / rundir.CHECKPOINT).exists():  # killed before its first checkpoint: start again
            cmd = [*fresh, "--overwrite"] if started else fresh
            drill.restarts_from_scratch += int(started)
        else:
            cmd = resume
        started = True
        if not _kill_at(cmd, run_dir, target, delay=rng.uniform(0.0, 0.05)):
            break  # it finished first
        ckpt = run_dir / rundir.CHECKPOINT
        step = int(rundir.load_checkpoint(ckpt)["step"]) if ckpt.exists() else 0
        drill.kills.append(
            Kill(target, _last_step(run_dir / "metrics.jsonl"), step, (run_dir / (rundir.CHECKPOINT + ".tmp")).exists())
        )
    final_cmd = resume if (run_dir / rundir.CHECKPOINT).exists() else [*fresh, "--overwrite"]
    subprocess.run(
        final_cmd, check=True, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800
    )
    return drill


def compare_runs(reference: Path, other: Path, drill: Drill) -> Drill:
    """Every tensor of the final checkpoints (weights, optimizer, EMA, RNG states) bit for bit, and
    the logged values of metrics.jsonl (all but the wall-clock times)."""
    a = rundir.load_checkpoint(reference / rundir.CHECKPOINT)
    b = rundir.load_checkpoint(other / rundir.CHECKPOINT)
    drill.differing = [key for key, x, y in _leaves(a, b) if not _same(x, y)]
    drill.identical = not drill.differing
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]
    drill.metrics_identical = strip(rundir.read_jsonl(reference / "metrics.jsonl")) == strip(
        rundir.read_jsonl(other / "metrics.jsonl")
    )
    return drill


def _leaves(a: Any, b: Any, prefix: str = ""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key == "elapsed":
                continue  # wall-clock time
            yield from _leaves(a.get(key), b.get(key), f"{prefix}{key}.")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _leaves(x, y, f"{prefix}{i}.")
    else:
        yield prefix.rstrip("."), a, b


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
        return x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)
    return type(x) is type(y) and json.dumps(x, default=str) == json.dumps(y, default=str)
