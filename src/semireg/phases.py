"""Multi-network training: several modules, phases that train some while the others stay frozen.

A `System` is data: a `ModuleDict` of networks (a module used in several places shares its
weights), a list of `Phase`s run in written order every round (each names the modules it trains,
its optimizer, its loss and how many steps it runs per round), and `state`, a `ModuleDict` of loss
state (buffers such as BEGAN's k) that losses update, that is logged and that checkpoints hold.

`train_system` is the loop. Every optimizer step is visible in it:

    for round:
        for phase in phases:
            for _ in range(phase.steps):
                with trained_only(nets, phase.trains):      # others: no grad, BatchNorm frozen
                    terms = phase.loss(nets, batches, state)
                    backward(terms["loss"]); optimizers[phase.name].step()
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from . import rundir
from .errors import ConfigError, DivergedError, RunDirError, mismatch

# ----------------------------------------------------------------------------- loss terms


def reduce_per_sample(value: torch.Tensor, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """A scalar from a per-sample loss (B,): the mean, or with `sample_weight` (B,) the weighted mean.

    A scalar `value` passes through (it cannot take sample weights)."""
    if value.dim() == 0:
        if sample_weight is not None:
            raise ValueError("sample weights need a per-sample loss of shape (B,), got a scalar")
        return value
    if value.dim() != 1:
        raise ValueError(f"a per-sample loss has shape (B,), got {tuple(value.shape)}")
    if sample_weight is None:
        return value.mean()
    if sample_weight.shape != value.shape:
        raise ValueError(f"sample_weight has shape {tuple(sample_weight.shape)}, the loss {tuple(value.shape)}")
    return (value * sample_weight).sum() / sample_weight.sum().clamp_min(1e-12)


class Terms:
    """Named loss terms, added wherever they are computed; `out()` is the dict a step returns.

    `add` puts `weight * term` into the total (`"loss"`) and logs the unweighted term; `log`
    records a value that is not optimised (an accuracy, k, M_global). A helper that computes a
    term can take the `Terms` and add to it, as Keras' `add_loss` does from inside a layer.
    """

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.logged: dict[str, torch.Tensor] = {}

    def add(self, name: str, value: torch.Tensor, weight: float | torch.Tensor = 1.0,
            sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        """`value`: a scalar or a per-sample loss (B,); `weight` may be a tensor (loss state, e.g. -k)."""
        if name in self.logged:
            raise ValueError(f"loss term '{name}' added twice")
        value = reduce_per_sample(value, sample_weight)
        self.logged[name] = value.detach()
        weighted = value if isinstance(weight, float) and weight == 1.0 else value * weight
        self.total = weighted if self.total is None else self.total + weighted
        return value

    def log(self, name: str, value: torch.Tensor | float) -> None:
        self.logged[name] = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(float(value))

    def out(self) -> dict[str, torch.Tensor]:
        if self.total is None:
            raise ValueError("no loss term was added")
        return {"loss": self.total, **self.logged}


# ----------------------------------------------------------------------------- phases


@dataclass(frozen=True)
class OptimizerSpec:
    """One phase's optimizer, as data."""

    name: str = "adam"  # adam | sgd | rmsprop
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0
    weight_decay: float = 0.0

    def build(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if self.name == "adam":
            return torch.optim.Adam(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        if self.name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if self.name == "rmsprop":
            return torch.optim.RMSprop(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        raise ConfigError(f"unknown optimizer '{self.name}' (known: adam, sgd, rmsprop)")


@dataclass(frozen=True)
class PhaseBatch:
    x: torch.Tensor  # (B, ...) images
    y: torch.Tensor  # (B,) labels (ignored by unsupervised systems)


# (nets, batches drawn for this step, loss state) -> {"loss": total, other named terms...}
PhaseLoss = Callable[[nn.ModuleDict, list[PhaseBatch], nn.ModuleDict], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Phase:
    name: str
    trains: tuple[str, ...]  # names in System.nets; every other module is frozen during this phase
    loss: PhaseLoss
    optimizer: OptimizerSpec = OptimizerSpec()
    steps: int = 1  # steps per round
    batches: int = 1  # batches drawn per step (e.g. 2: an image and another image to swap with)


@dataclass
class System:
    nets: nn.ModuleDict
    phases: list[Phase]
    state: nn.ModuleDict = field(default_factory=nn.ModuleDict)  # loss state: buffers, no parameters
    # (system, data, out_dir or None, round, final) -> metrics; pictures go to out_dir
    evaluate: Callable[..., dict[str, Any]] | None = None
    needs_labels: bool = False  # True: phases read batch.y, so fit_system must be given labels
    needs_test_set: bool = False  # evaluate reads data.eval_sets["test"]
    headline: tuple[str, ...] = ()  # final metrics printed in the summary table

    def check(self) -> None:
        names = set(self.nets)
        if not self.phases:
            raise ConfigError("a system needs at least one phase")
        seen = set()
        for phase in self.phases:
            if phase.name in seen:
                raise ConfigError(f"phase '{phase.name}' declared twice")
            seen.add(phase.name)
            unknown = [n for n in phase.trains if n not in names]
            if unknown or not phase.trains:
                raise ConfigError(f"phase '{phase.name}' trains {unknown or 'nothing'}; the system's modules are {sorted(names)}")
            if phase.steps < 1 or phase.batches < 1:
                raise ConfigError(f"phase '{phase.name}': steps and batches must be >= 1")
        if any(True for _ in self.state.parameters()):
            raise ConfigError("System.state holds loss state as buffers; it must not have parameters")


def trained_parameters(nets: nn.ModuleDict, trains: tuple[str, ...]) -> list[nn.Parameter]:
    """The parameters a phase trains, each once (a module shared between names counts once)."""
    seen: dict[int, nn.Parameter] = {}
    for name in trains:
        for p in nets[name].parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


@contextmanager
def trained_only(nets: nn.ModuleDict, trains: tuple[str, ...]) -> Iterator[None]:
    """Inside: only the parameters of `trains` require gradients, and normalisation layers of the
    other modules run in eval mode, so their running statistics do not move (Keras' trainable=False).

    Dropout in frozen modules keeps the module's mode, as in Keras. A parameter shared by a trained
    and a frozen name is trained. Gradients still flow *through* frozen modules to trained ones.
    """
    trained_ids = {id(p) for p in trained_parameters(nets, trains)}
    trained_modules = {id(m) for name in trains for m in nets[name].modules()}
    saved_grad = [(p, p.requires_grad) for p in nets.parameters()]
    frozen_norms = [m for m in nets.modules() if isinstance(m, _NormBase) and m.training and id(m) not in trained_modules]
    for p, _ in saved_grad:
        p.requires_grad_(id(p) in trained_ids)
    for m in frozen_norms:
        m.eval()
    try:
        yield
    finally:
        for p, flag in saved_grad:
            p.requires_grad_(flag)
        for m in frozen_norms:
            m.train()


# ----------------------------------------------------------------------------- the loop


@dataclass
class SystemResult:
    system: System
    metrics: dict[str, Any]
    run_dir: Path | None
    config: Any


def _checkpoint_state(system: System, optimizers: dict[str, torch.optim.Optimizer], sampler) -> dict[str, Any]:
    return {
        "nets": system.nets.state_dict(), "loss_state": system.state.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "sampler": sampler.state_dict(), "torch_rng": torch.get_rng_state(),
    }


def _load_state(system: System, optimizers: dict[str, torch.optim.Optimizer], sampler, state: dict[str, Any], path: Path) -> None:
    try:
        system.nets.load_state_dict(state["nets"])
        system.state.load_state_dict(state["loss_state"])
    except (RuntimeError, KeyError) as exc:
        raise RunDirError(f"{path}: checkpoint is of another system ({mismatch(exc)})") from None
    for name, opt in optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
    sampler.load_state_dict(state["sampler"])
    torch.set_rng_state(state["torch_rng"])


def train_system(cfg, system: System, data, run_dir: Path | None = None, *, split=None,
                 resume: bool = False, overwrite: bool = False) -> SystemResult:
    """Run `system`'s phases for `cfg.train.steps` rounds (or `epochs` of the training images).

    `data` is a TrainData: phases draw (x, y) batches of `train.batch_size` from its labelled set.
    """
    from lightning_fabric import Fabric

    from .data import IndexSampler
    from .engine import Meter, _progress, _seed_everything, _total_steps

    t = cfg.train
    system.check()
    if system.needs_labels and data.y_l is None:
        raise ConfigError("this system trains on labels; pass them (labels=...)")
    if system.needs_test_set and "test" not in data.eval_sets:
        raise ConfigError("this system is evaluated on a held-out test set; pass one (eval_data=(x, y))")
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    fabric = Fabric(accelerator=t.device, devices=1, precision=t.precision)
    device = fabric.device
    if run_dir is not None:
        rundir.prepare(run_dir, overwrite=overwrite, resume=resume)
    _seed_everything(t.seed, t.deterministic)

    nets, state = system.nets.to(device), system.state.to(device)
    optimizers = {ph.name: ph.optimizer.build(trained_parameters(nets, ph.trains)) for ph in system.phases}
    x_all = data.x_l.to(device)
    # Systems that need no labels may have none; their batches carry zeros.
    y_all = data.y_l.to(device) if data.y_l is not None else torch.zeros(len(x_all), dtype=torch.long, device=device)
    sampler = IndexSampler(len(x_all), t.batch_size, seed=t.seed * 2 + 1, device=device)
    total = _total_steps(cfg, len(x_all))  # rounds: `train.steps`, or `train.epochs` of the images

    start, elapsed = 0, 0.0
    metrics_path = run_dir / "metrics.jsonl" if run_dir is not None else None
    if run_dir is not None:
        if resume:
            ckpt = rundir.load_checkpoint(run_dir / rundir.CHECKPOINT)
            _load_state(system, optimizers, sampler, ckpt, run_dir / rundir.CHECKPOINT)
            start, elapsed = int(ckpt["step"]), float(ckpt["elapsed"])
            rundir.truncate_jsonl(metrics_path, start)
        else:
            rundir.write_json(run_dir / "config.json", cfg.to_dict())
            rundir.write_json(run_dir / "meta.json", {
                "code": rundir.code_version(), "seed": t.seed, "hardware": rundir.hardware(), "device": str(device),
                "precision": t.precision, "data": data.summary(), "total_rounds": total,
                "phases": [{"name": p.name, "trains": list(p.trains), "steps": p.steps, "batches": p.batches,
                            "optimizer": vars(p.optimizer)} for p in system.phases],
                "parameters": {name: sum(p.numel() for p in m.parameters()) for name, m in nets.items()},
            })
            if split is not None:
                split.save(run_dir / "split.npz")

    def checkpoint(done: int) -> None:
        if run_dir is None:
            return
        if not all(bool(p.isfinite().all()) for p in nets.parameters()):
            raise DivergedError(f"weights are not finite at round {done}; last good checkpoint kept in {run_dir}")
        rundir.save_checkpoint(run_dir / rundir.CHECKPOINT, {"step": done, "elapsed": elapsed, "config": cfg.to_dict(),
                                                              **_checkpoint_state(system, optimizers, sampler)})

    def draw() -> PhaseBatch:
        idx = sampler.next()
        return PhaseBatch(x_all[idx], y_all[idx])

    meters = {phase.name: Meter() for phase in system.phases}  # phases run different step counts: own means
    log = rundir.MetricsLog(run_dir, cfg.logger) if run_dir is not None else None
    bar = _progress(total, start, t.progress)
    nets.train()
    tick = time.perf_counter()
    for rnd in range(start, total):
        for phase in system.phases:
            optimizer = optimizers[phase.name]
            for _ in range(phase.steps):
                batches = [draw() for _ in range(phase.batches)]
                nets.zero_grad(set_to_none=True)  # no gradient left over from another phase
                with trained_only(nets, phase.trains):
                    with fabric.autocast():
                        terms = phase.loss(nets, batches, state)
                    fabric.backward(terms["loss"])
                optimizer.step()
                meters[phase.name].add(terms)
        done = rnd + 1
        is_last = done == total
        do_eval = system.evaluate is not None and t.eval_every and done % t.eval_every == 0 and not is_last
        do_ckpt = is_last or do_eval or (t.checkpoint_every and done % t.checkpoint_every == 0)
        if done % t.log_every == 0 or do_ckpt:
            elapsed += time.perf_counter() - tick
            logged = {f"{name}/{k}": v for name, meter in meters.items() for k, v in meter.flush().items()}
            if not all(math.isfinite(v) for v in logged.values()):
                bar.close()
                raise DivergedError(f"a loss became non-finite by round {done}: {logged}")
            if log is not None:
                log.write({"kind": "train", "step": done, "time": round(elapsed, 3), **logged})
            bar.set_postfix({k: f"{v:.3g}" for k, v in list(logged.items())[:4]}, refresh=False)
            if do_eval:
                nets.eval()
                m = system.evaluate(system, data, run_dir, done, False)
                nets.train()
                if log is not None:
                    log.write({"kind": "eval", "step": done, "time": round(elapsed, 3), **m})
            if do_ckpt:
                checkpoint(done)
            tick = time.perf_counter()
        bar.update(1)
    bar.close()
    if log is not None:
        log.close()

    nets.eval()
    final: dict[str, Any] = {"rounds": total, "steps_per_round": {p.name: p.steps for p in system.phases},
                             "train_time_s": round(elapsed, 2)}
    if system.evaluate is not None:
        eval_start = time.perf_counter()
        final.update(system.evaluate(system, data, run_dir, total, True))
        final["eval_time_s"] = round(time.perf_counter() - eval_start, 2)
    final["headline"] = {k: final[k] for k in system.headline if k in final}
    if run_dir is not None:
        rundir.write_json(run_dir / "results.json", final)
        plot_terms(metrics_path, run_dir / "curves.png")
        from .report.html import build_report

        build_report(run_dir, data)
    return SystemResult(system=system, metrics=final, run_dir=run_dir, config=cfg)


def plot_terms(metrics_path: Path, path: Path) -> None:
    """One panel per phase: its logged terms against rounds."""
    from .evaluate import _pyplot, read_jsonl

    records = [r for r in read_jsonl(metrics_path) if r.get("kind") == "train"]
    if not records:
        return
    keys = sorted({k for r in records for k in r if "/" in k})
    phases = sorted({k.split("/", 1)[0] for k in keys})
    plt = _pyplot()
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
