"""The step loop: one single-model method trained step by step, every optimizer step visible.

`train(cfg, run_dir)` is the entry point for every config: a multi-network system goes to the
phase loop (`phase_loop`), `train.devices` > 1 spawns data-parallel ranks, and each rank (or the
only process) runs `train_rank`: build the trainables (`build_trainables`), open the run
(`runs.open_run`), then `step_loop`. Epochs are a derived view (`epoch = step * batch_size /
n_labeled`). Lightning Fabric picks the device and the precision; batches are drawn by index from
tensors already on that device.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from . import distributed, hardware, rundir, runs
from .augment import Augmenter, eval_transform
from .classical_loop import train_classical
from .config import RunConfig, kind_of, method_options
from .data import IndexSampler, Split
from .data.arrays import as_images, notice, pixels_to_float
from .errors import ConfigError, RunDirError, mismatch
from .evaluation import classification_metrics, evaluation_mode, plot_curves, predict_logits, summary
from .finished import initial_weights, load_teacher, model_from_config
from .methods import Batch, DataStats, MethodSpec, get_method
from .models import LogitsOnly, describe_output, logits_of, unwrap
from .optim import EMA, Plateau, build_optimizer, lr_factor
from .phase_loop import train_system_config
from .traindata import TrainData, check_method_inputs, data_from_config


@dataclass
class Result:
    model: nn.Module
    metrics: dict[str, Any]
    run_dir: Path | None
    config: RunConfig

    def predict_proba(self, x: Any, batch_size: int = 1000) -> np.ndarray:
        """(N, K) class probabilities of inputs shaped as in training (arrays or tensors), each row
        summing to 1; columns in class order (`metrics["class_names"]` when the labels had names)."""
        x = as_images(x, "x")
        logits = predict_logits(self.model, x, batch_size, transform=eval_transform(self.config.augment))
        return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def predict(self, x: Any, batch_size: int = 1000) -> np.ndarray:
        """(N,) predicted classes: the class names when the labels had names, else class indices."""
        index = self.predict_proba(x, batch_size).argmax(axis=1)
        names = self.metrics.get("class_names")
        return np.asarray(names, dtype=object)[index] if names else index


@dataclass
class Trainables:
    """Everything a step touches, and everything a checkpoint must hold for a resumed run to reach
    the same weights (with the random streams, which `runs` saves)."""

    model: nn.Module  # the plain module: weights, EMA, evaluation, checkpoints
    step_model: nn.Module  # what a step calls: the model, compiled and/or wrapped by DDP
    optimizer: Any
    scheduler: Any
    ema: EMA | None
    lab_sampler: IndexSampler
    unl_sampler: IndexSampler | None
    augmenter: Augmenter
    plateau: Plateau
    swa: AveragedModel | None = None
    method_state: nn.Module | None = None  # the method's running state (FlexMatch, FreeMatch, alignment)
    best_weights: dict[str, torch.Tensor] | None = None  # early stopping: the best-monitored weights (CPU)
    channels_last: hardware.Choice = hardware.Choice(False, False, "set in the config")
    # (step, {split: metrics}) of the latest evaluation, in memory only: the final metrics reuse it when
    # the evaluated weights have not changed since (a run evaluates at its last step; evaluating the
    # same weights again cost seconds per split, more than the steps of a short run).
    last_eval: tuple[int, dict[str, dict[str, Any]]] | None = None

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema else None,
            "ema_updates": self.ema.updates if self.ema else 0,
            "swa": self.swa.state_dict() if self.swa is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "labeled_sampler": self.lab_sampler.state_dict(),
            "unlabeled_sampler": self.unl_sampler.state_dict() if self.unl_sampler else None,
            "plateau": self.plateau.state_dict(),
            "best_weights": self.best_weights,
            "method_state": self.method_state.state_dict() if self.method_state is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise RunDirError(f"{path}: checkpoint of another model ({mismatch(exc)})") from None
        if self.ema is not None:
            if state.get("ema") is None:
                raise RunDirError(f"{path}: checkpoint has no EMA weights but train.ema_decay > 0")
            self.ema.module.load_state_dict(state["ema"])
            # Checkpoints from before the warm-up existed: one EMA update per step.
            self.ema.updates = int(state.get("ema_updates", state.get("step", 0)))
        if self.swa is not None and state.get("swa") is not None:
            self.swa.load_state_dict(state["swa"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.lab_sampler.load_state_dict(state["labeled_sampler"])
        if self.unl_sampler is not None:
            self.unl_sampler.load_state_dict(state["unlabeled_sampler"])
        self.plateau.load_state_dict(state["plateau"])
        self.best_weights = state.get("best_weights")
        if self.method_state is not None:
            if state.get("method_state") is None:
                raise RunDirError(f"{path}: checkpoint has no state for this method")
            self.method_state.load_state_dict(state["method_state"])


def unlabeled_batch_size(cfg: RunConfig, paper_mu: int | None) -> int:
    """train.unlabeled_batch_size if set, else mu * batch_size (mu: train.mu, else the method's paper value, else 1)."""
    t = cfg.train
    if t.unlabeled_batch_size > 0:
        return t.unlabeled_batch_size
    return (t.mu or paper_mu or 1) * t.batch_size


def feature_std(data: TrainData) -> torch.Tensor:
    """(D,) each feature's standard deviation over the labelled and unlabelled rows (the vector
    views' noise unit); a constant feature gets 1 rather than 0, so that noise does not vanish."""
    rows = data.x_l if data.x_u is None else torch.cat([data.x_l, data.x_u])
    std = rows.float().std(dim=0, unbiased=False) if len(rows) > 1 else torch.ones(rows.shape[1])
    return torch.where(std > 0, std, torch.ones_like(std))


def data_stats(data: TrainData) -> DataStats:
    """What a method's data-dependent defaults read of the training inputs."""
    if data.x_l.ndim != 2:
        return DataStats(is_vector=False)
    rows = data.x_l if data.x_u is None else torch.cat([data.x_l, data.x_u])  # (N, D)
    return DataStats(is_vector=True, rms_radius=float(rows.double().var(dim=0, unbiased=False).sum().sqrt()))


def fill_data_defaults(cfg: RunConfig, data: TrainData) -> str | None:
    """A method's defaults that depend on the data (VAT's radius on vectors), written into cfg.method
    before the run opens, so that config.json records the value used; returns its one-line notice."""
    if kind_of(cfg.method["name"]) != "method":
        return None
    spec = get_method(cfg.method["name"])
    if spec.data_defaults is None:
        return None
    opts, note = spec.data_defaults(method_options(cfg), data_stats(data))
    cfg.method.update(dataclasses.asdict(opts))
    return note


@torch.no_grad()
def recompute_bn(model: nn.Module, x: torch.Tensor, batch_size: int, view=None) -> None:
    """BatchNorm running statistics recomputed from scratch over `x` (what swa_utils.update_bn does)."""
    parts = (pixels_to_float(x[i : i + batch_size]) for i in range(0, len(x), batch_size))
    batches = (view(b) if view else b for b in parts)
    update_bn(batches, model)


# ----------------------------------------------------------------------------- entry points


def train(
    cfg: RunConfig,
    run_dir: str | Path | None = None,
    *,
    model: nn.Module | None = None,
    data: TrainData | None = None,
    split: Split | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Result:
    """Train `cfg` and return the trained model with its final metrics.

    With `run_dir`, the run directory receives config.json, meta.json, split.npz, metrics.jsonl,
    checkpoint.pt, results.json and the plots; `resume=True` continues from its checkpoint.
    With `train.devices` > 1 the ranks are spawned here and rank 0's result is returned.
    """
    run_dir = None if run_dir is None else Path(run_dir)  # a str from a user's script, as the CLI's paths
    name, kind = cfg.method["name"], kind_of(cfg.method["name"])
    if kind != "method":
        what = {"system": "a multi-network system", "classical": "a classical method"}[kind]
        if model is not None:
            where = "pass modules to fit_system" if kind == "system" else "it fits a module of its own"
            raise ConfigError(f"'{name}' is {what}: {where}, not a model")
        if cfg.train.devices * cfg.train.num_nodes > 1 or distributed.launched_externally():
            raise ConfigError(
                f"'{name}' is {what}, trained in one process: train.devices and train.num_nodes must be 1"
            )
        if kind == "system":
            return train_system_config(cfg, run_dir, data=data, split=split, resume=resume, overwrite=overwrite)
        fitted, metrics = train_classical(cfg, run_dir, data=data, split=split, resume=resume, overwrite=overwrite)
        return Result(model=fitted, metrics=metrics, run_dir=run_dir, config=cfg)
    fabric, spawn = distributed.make_fabric(cfg.train)
    if not spawn:
        return train_rank(fabric, cfg, run_dir, model, data, split, resume, overwrite)
    # Errors the parent can see are raised here, not as a crashed child process.
    world = cfg.train.devices * cfg.train.num_nodes
    distributed.Ranks(None, 0, world).check_divisible(
        **{
            "train.batch_size": cfg.train.batch_size,
            "unlabelled batch size": unlabeled_batch_size(cfg, get_method(cfg.method["name"]).mu),
        }
    )
    if run_dir is not None:
        rundir.check_target(run_dir, overwrite=overwrite, resume=resume)
    with tempfile.TemporaryDirectory(prefix="semireg-ranks-") as handover:
        result_path = Path(handover) / "result.pt"
        fabric.launch(_train_spawned_rank, result_path, cfg, run_dir, model, data, split, resume, overwrite)
        return torch.load(result_path, weights_only=False)  # written a moment ago by our own rank 0


def _train_spawned_rank(fabric, result_path: Path, *args) -> None:
    """A spawned rank. Rank 0 hands its Result over in a file: through the launcher's return queue a
    large one would fill the pipe while the parent waits for the children to exit (a deadlock), and
    tensors shared through memory vanish with the process that owns them."""
    result = train_rank(fabric, *args)
    if fabric.global_rank == 0:
        torch.save(result, result_path)
    distributed.leave_process_group()


def train_rank(
    fabric,
    cfg: RunConfig,
    run_dir: Path | None,
    model: nn.Module | None,
    data: TrainData | None,
    split: Split | None,
    resume: bool,
    overwrite: bool,
) -> Result:
    """What each data-parallel rank (or the only process) runs: checks, trainables, run, loop."""
    ranks = distributed.Ranks.of(fabric)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if data is None:
        data, split = data_from_config(cfg)
    note = fill_data_defaults(cfg, data)
    if note and ranks.is_main:
        notice(note)
    spec, opts = get_method(cfg.method["name"]), method_options(cfg)
    check_method_inputs(cfg, data, spec, opts)
    teacher = load_teacher(cfg.teacher, data, fabric.device) if cfg.teacher else None
    init = initial_weights(cfg)
    unl_batch = unlabeled_batch_size(cfg, spec.mu)
    ranks.check_divisible(**{"train.batch_size": cfg.train.batch_size, "unlabelled batch size": unl_batch})
    total = runs.total_steps(cfg.train, len(data.y_l))
    parts = build_trainables(fabric, ranks, cfg, spec, opts, data, model, init, unl_batch, total)
    precision = hardware.resolve_precision(cfg.train.precision, cfg.train.device)
    meta = {
        "device": str(fabric.device),
        "precision": precision.value,
        "world_size": ranks.world,
        "speed": {"precision": vars(precision), "channels_last": vars(parts.channels_last)},
        "data": data.summary(),
        "fingerprint": data.fingerprint(),
        "total_steps": total,
        "unlabeled_batch_size": unl_batch if parts.unl_sampler is not None else 0,
        "evaluated_weights": "swa" if parts.swa else "ema" if parts.ema else "model",
        "teacher": cfg.teacher or None,
        "init_from": cfg.init_from or None,
    }
    # Only now, with the data, the config and the teacher known to be good, is the directory touched.
    run, saved = runs.open_run(
        cfg, run_dir, total=total, resume=resume, overwrite=overwrite, meta=meta, split=split, ranks=ranks
    )
    if ranks.is_main:  # once the run is this process's (a refused second writer prints only its error)
        print(hardware.describe(precision, parts.channels_last), file=sys.stderr)
    try:
        if saved is not None:
            parts.load_state_dict(saved, run_dir / rundir.CHECKPOINT)
            runs.restore_rng(saved, ranks, {"augmenter": parts.augmenter.generator}, cfg.train.seed)
        elif ranks.rank > 0:
            torch.manual_seed(cfg.train.seed + runs.RANK_SEED_STRIDE * ranks.rank)  # dropout, VAT's random directions
        stopped_at = step_loop(fabric, ranks, run, parts, spec, opts, data, teacher)
        return _wrap_up(run, parts, data, ranks, stopped_at)
    finally:
        run.close()


def build_trainables(
    fabric,
    ranks: distributed.Ranks,
    cfg: RunConfig,
    spec: MethodSpec,
    opts: Any,
    data: TrainData,
    model: nn.Module | None,
    init: dict[str, torch.Tensor] | None,
    unl_batch: int,
    total: int,
) -> Trainables:
    """The model (the same initial weights on every rank), its optimizer, schedule, EMA/SWA,
    samplers, augmenter and the method's running state, all on the training device."""
    t, device = cfg.train, fabric.device
    runs.seed_everything(t.seed, t.deterministic)
    # Rank 0 draws the random numbers a single process would; the others their own streams.
    augmenter = Augmenter(
        cfg.augment,
        device,
        seed=t.seed * 2 + 3 + runs.RANK_SEED_STRIDE * ranks.rank,
        feature_std=feature_std(data) if data.x_l.ndim == 2 else None,
    )
    model = model if model is not None else model_from_config(cfg, data)
    if init is not None:
        try:
            model.load_state_dict(init)
        except RuntimeError as exc:
            raise ConfigError(f"init_from {cfg.init_from}: another architecture ({mismatch(exc)})") from None
    model = model.to(device)
    model = adapt_model(model, data, device, augmenter.eval_view)
    channels_last = hardware.resolve_channels_last(t.channels_last, model, data.x_l.ndim)
    if channels_last.value:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if t.compile else model
    if ranks.world > 1:
        # DDP: gradients averaged over ranks in backward. The strategy's bare DDP module, not
        # `fabric.setup_module`'s wrapper: under mixed precision that wrapper hooks every output and
        # refuses any backward not started by `fabric.backward`, VAT's torch.autograd.grad included.
        step_model = fabric.strategy.setup_module(step_model)
    optimizer = fabric.setup_optimizers(build_optimizer(model.parameters(), cfg))
    plateau = Plateau(
        "min" if t.monitor == "val_loss" else "max", t.plateau_patience, t.plateau_factor, t.early_stop_patience
    )
    swa_start = int(t.swa_start * total) if t.swa else total

    def lr_at(s: int) -> float:
        if t.swa and t.swa_lr > 0 and s >= swa_start:
            return t.swa_lr / t.lr * plateau.scale
        return lr_factor(s, cfg, total) * plateau.scale

    uses_unlabeled = spec.uses_unlabeled(opts)
    n_u = len(data.x_u) if uses_unlabeled else 0
    # Samplers draw global batches (the same on every rank); each rank keeps its share.
    return Trainables(
        model,
        step_model,
        optimizer,
        torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at),
        EMA(model, t.ema_decay, t.ema_warmup) if t.ema_decay > 0 else None,
        IndexSampler(len(data.y_l), t.batch_size, seed=t.seed * 2 + 1, device=device),
        IndexSampler(n_u, unl_batch, seed=t.seed * 2 + 2, device=device) if uses_unlabeled else None,
        augmenter,
        plateau,
        AveragedModel(model) if t.swa else None,
        # The method's running state (thresholds, class statistics): buffers on the device, checkpointed.
        spec.make_state(opts, data.num_classes, n_u).to(device) if spec.make_state is not None else None,
        channels_last=channels_last,
    )


# ----------------------------------------------------------------------------- the loop


def step_loop(
    fabric,
    ranks: distributed.Ranks,
    run: runs.Run,
    parts: Trainables,
    spec: MethodSpec,
    opts: Any,
    data: TrainData,
    teacher: nn.Module | None,
) -> int | None:
    """Steps from `run.start` to the end (or an early stop, whose step is returned)."""
    t, device, aug = run.cfg.train, fabric.device, parts.augmenter
    x_l, y_l = data.x_l.to(device), data.y_l.to(device)  # on the device once; batches are index lookups
    x_u = data.x_u.to(device) if parts.unl_sampler is not None else None
    to_format = _memory_format(parts.channels_last.value)
    swa_start = int(t.swa_start * run.total) if t.swa else run.total
    swa_every = t.swa_every or max(1, -(-len(y_l) // t.batch_size))  # default: once per epoch
    meter, bar = runs.Meter(), runs.progress_bar(run.total, run.start, t.progress and ranks.is_main)
    parts.model.train()
    run.restart_clock()
    for step in range(run.start, run.total):
        idx = ranks.shard(parts.lab_sampler.next())  # (B / world,)
        idx_u = ranks.shard(parts.unl_sampler.next()) if x_u is not None else None  # (Bu / world,)
        x_u_raw = pixels_to_float(x_u[idx_u]) if x_u is not None else None  # (Bu / world, ...) float
        batch = Batch(
            x_l=to_format(aug.weak(pixels_to_float(x_l[idx]))),
            y_l=y_l[idx],
            x_u=to_format(aug.weak(x_u_raw)) if x_u_raw is not None else None,
            strong=aug.strong,
            teacher=teacher,
            weak=aug.weak,
            x_u_raw=x_u_raw,
            idx_u=idx_u,
            ema=parts.ema.module if parts.ema is not None else None,
            state=parts.method_state,
            progress=step / run.total,
            gather=ranks.gather,
        )
        with fabric.autocast():
            terms = spec.step(parts.step_model, batch, opts)
        parts.optimizer.zero_grad(set_to_none=True)
        fabric.backward(terms["loss"])
        parts.optimizer.step()
        parts.scheduler.step()
        if parts.ema is not None:
            parts.ema.update(parts.model)
        done = step + 1
        if parts.swa is not None and done > swa_start and (done - swa_start) % swa_every == 0:
            parts.swa.update_parameters(parts.model)
        meter.add(terms)
        bar.update(1)
        due = run.due(done)
        if not due.log:
            continue
        logged = meter.flush(ranks.mean)
        run.train_record(
            done, logged, epoch=round(done * t.batch_size / len(y_l), 4), lr=parts.scheduler.get_last_lr()[0]
        )
        bar.set_postfix(loss=f"{logged.get('loss', float('nan')):.4f}", refresh=False)
        stop = False
        if due.checkpoint:
            _sync_state(ranks, parts)
        if due.eval:
            stop = _evaluate(run, parts, data, ranks, done)
        if due.checkpoint or stop:
            run.save(done, parts.state_dict, parts.model.parameters(), {"augmenter": aug.generator})
        run.restart_clock()
        if stop:
            bar.close()
            return done
    bar.close()
    return None


def _evaluate(run: runs.Run, parts: Trainables, data: TrainData, ranks: distributed.Ranks, done: int) -> bool:
    """Evaluate every split, log it, and feed the validation split to LR-on-plateau / early
    stopping (keeping the best weights). Returns whether training should stop."""
    t, stop = run.cfg.train, False
    parts.last_eval = (done, {})
    for name, (x, y) in data.eval_sets.items():
        full = metrics_on(parts.eval_model, x, y, data.num_classes, parts.augmenter.eval_view, ranks)
        parts.last_eval[1][name] = full
        m = summary(full)
        run.eval_record(done, m, split=name)
        if name == "val" and (t.plateau_patience or t.early_stop_patience):
            improved, stop = parts.plateau.update(m["loss"] if t.monitor == "val_loss" else m["accuracy"], done)
            if improved and t.early_stop_patience and t.restore_best and parts.swa is None:  # SWA ends on its average
                parts.best_weights = {
                    k: v.detach().to("cpu", copy=True) for k, v in parts.eval_model.state_dict().items()
                }
    return stop


def _sync_state(ranks: distributed.Ranks, parts: Trainables) -> None:
    """Before evaluating or saving: one set of BatchNorm statistics for all ranks, and a check that
    the trained weights and the method's state really are the same on every rank."""
    ranks.average_buffers(parts.model, parts.ema.module if parts.ema else None)
    ranks.assert_same("the weights", list(parts.model.parameters()))
    if parts.method_state is not None:
        ranks.assert_same("the method's state", list(parts.method_state.buffers()))


def _wrap_up(
    run: runs.Run, parts: Trainables, data: TrainData, ranks: distributed.Ranks, stopped_at: int | None
) -> Result:
    """The evaluated weights (SWA average, best-monitored, EMA or the model), the final metrics,
    the last checkpoint with them, and the run's outputs."""
    t, view = run.cfg.train, parts.augmenter.eval_view
    eval_model, device = parts.eval_model, next(parts.model.parameters()).device
    final_kind = "swa" if parts.swa is not None else "ema" if parts.ema else "model"
    last_eval = parts.last_eval if parts.swa is None else None  # SWA evaluates its average, not these weights
    if (
        (stopped_at is not None or (t.early_stop_patience and t.restore_best))
        and parts.swa is None
        and parts.best_weights is not None
    ):
        eval_model.load_state_dict(parts.best_weights)
        final_kind += f"@best(step {parts.plateau.best_step})"
        last_eval = None
    if t.bn_recompute and parts.swa is None:  # (the SWA average gets its statistics below)
        rows = data.x_l if t.bn_recompute_on == "labeled" or data.x_u is None else torch.cat([data.x_l, data.x_u])
        recompute_bn(eval_model, rows.to(device), max(t.batch_size, 256), view)
        final_kind += "+bn"
        last_eval = None
    if parts.swa is not None:
        if parts.swa.n_averaged.item() == 0:  # stopped before the averaging window: average the last weights
            parts.swa.update_parameters(parts.model)
        recompute_bn(parts.swa.module, data.x_l.to(device), max(t.batch_size, 256), view)
        eval_model = parts.swa.module
    epochs = run.total * t.batch_size / max(1, len(data.y_l))
    final: dict[str, Any] = {
        "steps": run.total,
        "epochs": epochs,
        "train_time_s": round(run.elapsed, 2),
        "time_per_epoch_s": round(run.elapsed / epochs, 3) if epochs else None,
        "evaluated_weights": final_kind,
    }
    reuse = last_eval is not None and last_eval[0] == (stopped_at or run.total)
    for name, (x, y) in data.eval_sets.items():
        final[name] = dict(last_eval[1][name]) if reuse else metrics_on(eval_model, x, y, data.num_classes, view, ranks)
    final["stopped_at"] = stopped_at
    if data.class_names:
        final["class_names"] = data.class_names
    if ranks.world > 1:
        final["world_size"] = ranks.world
    final_state = lambda: {**parts.state_dict(), "final": eval_model.state_dict(), "final_kind": final_kind}
    run.save(stopped_at or run.total, final_state, parts.model.parameters(), {"augmenter": parts.augmenter.generator})
    run.finish(final, data, plot_curves)
    return Result(model=unwrap(eval_model), metrics=final, run_dir=run.dir, config=run.cfg)


# ----------------------------------------------------------------------------- helpers


def metrics_on(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    view=None,
    ranks: distributed.Ranks | None = None,
) -> dict[str, Any]:
    """Classification metrics and the cross-entropy of `model` on (x, y), split over ranks."""

    def predict(part: torch.Tensor) -> torch.Tensor:
        return predict_logits(model, part, transform=view)  # (n, K)

    logits = ranks.predict(predict, x) if ranks is not None else predict(x)  # (N, K), each rank a share
    m = classification_metrics(y.numpy(), logits.argmax(1).cpu().numpy(), num_classes)
    m["loss"] = float(torch.nn.functional.cross_entropy(logits, y.to(logits.device)))
    return m


def _memory_format(channels_last: bool):
    if not channels_last:
        return lambda x: x
    return lambda x: x.contiguous(memory_format=torch.channels_last)


def adapt_model(model: nn.Module, data: TrainData, device: torch.device, view=None) -> nn.Module:
    """A forward on two samples, so that a shape mismatch is one clear error, not a deep traceback.
    A model whose output holds its logits (a dict with "logits", a tuple, an object with `.logits`)
    comes back wrapped so that it returns only them; any other model comes back as it is."""
    probe = pixels_to_float(data.x_l[:2].to(device))
    probe = view(probe) if view is not None else probe
    try:
        with evaluation_mode(model), torch.no_grad():
            out = model(probe)
    except Exception as exc:  # any failure here is the user's model rejecting the input shape
        raise ConfigError(
            f"the model does not take inputs of shape {tuple(probe.shape[1:])}: {str(exc).splitlines()[0]}"
        ) from None
    logits = logits_of(out)
    expected = (len(probe), data.num_classes)
    why = f": {data.num_classes} classes, {data.num_classes_reason}" if data.num_classes_reason else ""
    if logits is None:
        raise ConfigError(f"the model must map a batch to logits {expected}; it returned {describe_output(out)}")
    if logits.shape != expected:
        raise ConfigError(f"the model must map a batch to logits {expected}{why}; it returned {tuple(logits.shape)}")
    return model if isinstance(out, torch.Tensor) else LogitsOnly(model)
