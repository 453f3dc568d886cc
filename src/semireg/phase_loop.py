"""The phase loop: a multi-network `phases.System` trained round by round, its phases in written
order, each with its own optimizer while the other modules stay frozen. Every optimizer step is
visible in `phase_rounds`; opening the run, the schedule, records, checkpoints and the final
outputs are the same `runs` lifecycle the step loop uses.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import hardware, rundir, runs
from .config import RunConfig, method_options
from .data import IndexSampler, Split
from .distributed import Ranks
from .errors import ConfigError, RunDirError, mismatch
from .evaluation import pyplot
from .finished import finished_run
from .phases import PhaseBatch, System, set_lr, trained_only, trained_parameters
from .systems import get_system
from .traindata import TrainData, data_from_config


@dataclass
class SystemResult:
    system: System
    metrics: dict[str, Any]
    run_dir: Path | None
    config: Any


class PhaseState:
    """What a system's checkpoint holds besides the random streams: networks, loss state,
    one optimizer per phase, the sampler."""

    def __init__(self, system: System, optimizers: dict[str, torch.optim.Optimizer], sampler: IndexSampler) -> None:
        self.system, self.optimizers, self.sampler = system, optimizers, sampler

    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": self.system.nets.state_dict(),
            "loss_state": self.system.state.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "sampler": self.sampler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.system.nets.load_state_dict(state["nets"])
            self.system.state.load_state_dict(state["loss_state"])
        except (RuntimeError, KeyError) as exc:
            raise RunDirError(f"{path}: checkpoint is of another system ({mismatch(exc)})") from None
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.sampler.load_state_dict(state["sampler"])


def train_system_config(
    cfg: RunConfig,
    run_dir: str | Path | None = None,
    *,
    data: TrainData | None = None,
    split: Split | None = None,
    resume: bool = False,
    overwrite: bool = False,
    modules: dict[str, nn.Module] | None = None,
) -> SystemResult:
    """Build the registered system `cfg.method.name` (with any user `modules`) and train it in phases."""
    spec = get_system(cfg.method["name"])
    if data is None:
        data, split = data_from_config(cfg)
    torch.manual_seed(cfg.train.seed)  # the networks' initial weights
    system = spec.build(data.in_shape, data.num_classes, method_options(cfg), modules)
    return train_system(cfg, system, data, run_dir, split=split, resume=resume, overwrite=overwrite)


def train_system(
    cfg: RunConfig,
    system: System,
    data: TrainData,
    run_dir: str | Path | None = None,
    *,
    split: Split | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> SystemResult:
    """Run `system`'s phases for `cfg.train.steps` rounds (or `epochs` of the training images).

    `data` is a TrainData: phases draw (x, y) batches of `train.batch_size` from its labelled set.
    """
    run_dir = None if run_dir is None else Path(run_dir)
    data = data.as_float()  # the systems' probes and pictures use whole arrays: MNIST-sized, as floats
    t = cfg.train
    system.check()
    if system.needs_labels and data.y_l is None:
        raise ConfigError("this system trains on labels; pass them (labels=...)")
    if system.needs_test_set and "test" not in data.eval_sets:
        raise ConfigError("this system is evaluated on a held-out test set; pass one (eval_data=(x, y))")
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    from lightning_fabric import Fabric  # lazy: ~2.5 s of start-up that only training needs

    precision = hardware.resolve_precision(t.precision, t.device)
    fabric = Fabric(accelerator=t.device, devices=1, precision=precision.value)
    runs.seed_everything(t.seed, t.deterministic)
    nets = system.nets.to(fabric.device)
    system.state.to(fabric.device)
    optimizers = {ph.name: ph.optimizer.build(trained_parameters(nets, ph.trains)) for ph in system.phases}
    sampler = IndexSampler(len(data.x_l), t.batch_size, seed=t.seed * 2 + 1, device=fabric.device)
    parts = PhaseState(system, optimizers, sampler)
    total = runs.total_steps(t, len(data.x_l))  # rounds: `train.steps`, or `train.epochs` of the images
    meta = {
        "device": str(fabric.device),
        "precision": precision.value,
        "speed": {"precision": vars(precision)},
        "data": data.summary(),
        "fingerprint": data.fingerprint(),
        "total_rounds": total,
        "phases": [
            {
                "name": p.name,
                "trains": list(p.trains),
                "steps": p.steps,
                "batches": p.batches,
                "optimizer": vars(p.optimizer),
            }
            for p in system.phases
        ],
        "parameters": {name: sum(p.numel() for p in m.parameters()) for name, m in nets.items()},
    }
    run, saved = runs.open_run(cfg, run_dir, total=total, resume=resume, overwrite=overwrite, meta=meta, split=split)
    print(f"semireg: precision {precision.value} ({precision.reason})", file=sys.stderr)
    try:
        if saved is not None:
            parts.load_state_dict(saved, run_dir / rundir.CHECKPOINT)
            runs.restore_rng(saved, Ranks(None), {}, t.seed)
        final = phase_rounds(fabric, run, parts, data)
        run.finish(final, data, plot_terms)
        return SystemResult(system=system, metrics=final, run_dir=run_dir, config=cfg)
    finally:
        run.close()


def phase_rounds(fabric, run: runs.Run, parts: PhaseState, data: TrainData) -> dict[str, Any]:
    """Rounds from `run.start` to the end; returns the final metrics (the last round's full evaluation)."""
    system, nets, t = parts.system, parts.system.nets, run.cfg.train
    device = fabric.device
    x_all = data.x_l.to(device)
    # Systems that need no labels may have none; their batches carry zeros.
    y_all = data.y_l.to(device) if data.y_l is not None else torch.zeros(len(x_all), dtype=torch.long, device=device)

    def draw() -> PhaseBatch:
        idx = parts.sampler.next()
        return PhaseBatch(x_all[idx], y_all[idx])

    meters = {phase.name: runs.Meter() for phase in system.phases}  # phases run different step counts: own means
    bar = runs.progress_bar(run.total, run.start, t.progress)
    final: dict[str, Any] | None = None
    nets.train()
    run.restart_clock()
    for rnd in range(run.start, run.total):
        for phase in system.phases:
            optimizer = parts.optimizers[phase.name]
            if phase.lr_scale is not None:  # the loss state sets this phase's learning rate
                set_lr(optimizer, phase.optimizer.lr * phase.lr_scale(system.state))
            for _ in range(phase.steps):
                batches = [draw() for _ in range(phase.batches)]
                nets.zero_grad(set_to_none=True)  # no gradient left over from another phase
                with trained_only(nets, phase.trains, phase.frozen_norms):
                    with fabric.autocast():
                        terms = phase.loss(nets, batches, system.state)
                    fabric.backward(terms["loss"])
                optimizer.step()
                meters[phase.name].add(terms)
        done = rnd + 1
        bar.update(1)
        due = run.due(done)
        if not due.log:
            continue
        logged = {f"{name}/{k}": v for name, meter in meters.items() for k, v in meter.flush().items()}
        run.train_record(done, logged)
        bar.set_postfix({k: f"{v:.3g}" for k, v in list(logged.items())[:4]}, refresh=False)
        if due.eval and system.evaluate is not None:
            final = _evaluate(run, system, data, done, final=due.last)
        if due.checkpoint:
            run.save(done, parts.state_dict, nets.parameters())
        run.restart_clock()
    bar.close()
    if final is None or run.start == run.total:  # resumed at the end: nothing ran, evaluate what was saved
        final = _evaluate(run, system, data, run.total, final=True) if system.evaluate is not None else {}
    nets.eval()
    return {
        "rounds": run.total,
        "steps_per_round": {p.name: p.steps for p in system.phases},
        "train_time_s": round(run.elapsed, 2),
        **final,
        "headline": {k: final[k] for k in system.headline if k in final},
    }


def _evaluate(run: runs.Run, system: System, data: TrainData, done: int, final: bool) -> dict[str, Any]:
    """The system's evaluation (its full one, with pictures and probes, at the last round), logged."""
    start = time.perf_counter()
    system.nets.eval()
    metrics = system.evaluate(system, data, run.dir, done, final)
    system.nets.train()
    run.eval_record(done, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    return {**metrics, "eval_time_s": round(time.perf_counter() - start, 2)} if final else metrics


def evaluate_finished_system(run_dir: str | Path, data: TrainData) -> dict[str, Any]:
    """Rebuild a system run's networks from its checkpoint and run the system's full evaluation
    again (pictures included, written to the run directory). Works on an unfinished run's last
    checkpoint too; the round is recorded."""
    run_dir = Path(run_dir)
    cfg, state = finished_run(run_dir, "run")
    system = get_system(cfg.method["name"]).build(data.in_shape, data.num_classes, method_options(cfg), None)
    try:
        system.nets.load_state_dict(state["nets"])
        system.state.load_state_dict(state["loss_state"])
    except (RuntimeError, KeyError) as exc:
        raise ConfigError(f"{run_dir}: checkpoint does not match its system ({mismatch(exc)})") from None
    system.nets.eval()
    if system.evaluate is None:
        return {"round": int(state["step"])}
    return {"round": int(state["step"]), **system.evaluate(system, data, run_dir, int(state["step"]), True)}


def plot_terms(metrics_path: Path, path: Path) -> None:
    """One panel per phase: its logged terms against rounds."""
    records = [r for r in rundir.read_jsonl(metrics_path) if r.get("kind") == "train"]
    if not records:
        return
    keys = sorted({k for r in records for k in r if "/" in k})
    phases = sorted({k.split("/", 1)[0] for k in keys})
    plt = pyplot()
    fig, axes = plt.subplots(1, len(phases), figsize=(4.5 * len(phases), 3.4), squeeze=False)
    for ax, phase in zip(axes[0], phases):
        for key in [k for k in keys if k.startswith(phase + "/")]:
            pts = [(r["step"], r[key]) for r in records if key in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=key.split("/", 1)[1])
        ax.set_title(f"phase {phase}")
        ax.set_xlabel("round")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
