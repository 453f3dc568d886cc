"""The training engine: one step-based loop in which every optimizer step is visible.

Epochs are a derived view (`epoch = step * batch_size / n_labeled`). Lightning Fabric picks the
device and the precision; batches are drawn by index from tensors already on that device.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import distributed, rundir
from .augment import Augmenter
from .config import RunConfig, is_system, method_options
from .data import IndexSampler, Split, load_dataset, make_split
from .errors import ConfigError, DivergedError, RunDirError, mismatch
from .evaluate import classification_metrics, plot_confusion, plot_curves, predict_logits, summary
from .methods import Batch, get_method
from .models import build_model
from .report.html import build_report


# ----------------------------------------------------------------------------- data


@dataclass
class TrainData:
    """Everything the loop draws from, as tensors. x: (N, C, H, W) or (N, D) float32."""

    x_l: torch.Tensor
    y_l: torch.Tensor  # (N,); None only for a label-free system trained without labels (fit_system)
    x_u: torch.Tensor | None
    num_classes: int
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    class_names: list[str] | None = None
    name: str = ""  # the data set's name (e.g. cifar10-jpeg), recorded in meta.json

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_l.shape[1:])

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "in_shape": list(self.in_shape), "num_classes": self.num_classes,
            "class_names": self.class_names, "labeled": len(self.x_l),
            "unlabeled": 0 if self.x_u is None else len(self.x_u),
            **{f"eval_{k}": len(v[1]) for k, v in self.eval_sets.items()},
        }


def data_from_config(cfg: RunConfig) -> tuple[TrainData, Split]:
    d = cfg.data
    ds = load_dataset(d.dataset, d.data_dir, d.download)
    split = make_split(
        ds.y_train.numpy(), ds.num_classes, protocol=d.protocol, n_labeled=d.n_labeled,
        n_unlabeled=d.n_unlabeled, n_val=d.n_val, n_test=d.n_test, balanced=d.balanced,
        has_test_set=ds.x_test is not None, seed=cfg.train.seed if d.split_seed < 0 else d.split_seed,
    )
    take = lambda idx: torch.from_numpy(idx)
    eval_sets = {}
    if split.test is not None:
        eval_sets["test"] = (ds.x_train[take(split.test)], ds.y_train[take(split.test)])
    else:
        eval_sets["test"] = (ds.x_test, ds.y_test)
    if len(split.val):
        eval_sets["val"] = (ds.x_train[take(split.val)], ds.y_train[take(split.val)])
    data = TrainData(
        x_l=ds.x_train[take(split.labeled)], y_l=ds.y_train[take(split.labeled)],
        x_u=ds.x_train[take(split.unlabeled)] if len(split.unlabeled) else None,
        num_classes=ds.num_classes, eval_sets=eval_sets, class_names=ds.class_names, name=ds.name,
    )
    return data, split


# ----------------------------------------------------------------------------- optimisation


def build_optimizer(params, cfg: RunConfig) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay)
    if t.optimizer == "adadelta":
        # Keras' Adadelta defaults (seed 000): lr 1.0, rho 0.95, epsilon 1e-7.
        return torch.optim.Adadelta(params, lr=t.lr, rho=0.95, eps=1e-7, weight_decay=t.weight_decay)
    raise ConfigError(f"train.optimizer: unknown optimizer '{t.optimizer}'")


def lr_factor(step: int, cfg: RunConfig, total: int) -> float:
    """Multiplier of the base learning rate at `step` (linear warm-up, then the schedule)."""
    t = cfg.train
    if t.warmup_steps and step < t.warmup_steps:
        return (step + 1) / t.warmup_steps
    progress = (step - t.warmup_steps) / max(1, total - t.warmup_steps)
    if t.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if t.schedule == "linear":
        return 1.0 - progress
    if t.schedule == "step":
        return t.step_gamma ** sum(progress >= m for m in t.step_milestones)
    return 1.0


class EMA:
    """An exponential moving average of a model's weights; buffers are copied. Never trained."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = [p for p in self.module.parameters()]
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)


class Meter:
    """Sums of the step's scalar terms, kept on the device; one host sync per flush."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for key, value in terms.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += 1

    def flush(self, reduce=lambda v: v) -> dict[str, float]:
        """Means since the last flush; `reduce` averages them across data-parallel ranks (one collective)."""
        if not self.count:
            return {}
        keys = list(self.sums)
        values = reduce(torch.stack([self.sums[k] for k in keys]).div(self.count)).tolist()
        self.sums, self.count = {}, 0
        return dict(zip(keys, values))


# ----------------------------------------------------------------------------- the loop


class Plateau:
    """Validation-driven control: learning-rate reduction on plateau and early stopping (Keras semantics).

    `scale` multiplies the scheduled learning rate. Patience counts evaluations without an
    improvement of the monitored value by more than `min_delta`.
    """

    def __init__(self, mode: str, patience_lr: int, factor: float, patience_stop: int, min_delta: float = 1e-4) -> None:
        self.sign = 1.0 if mode == "min" else -1.0
        self.patience_lr, self.factor, self.patience_stop, self.min_delta = patience_lr, factor, patience_stop, min_delta
        self.best = math.inf
        self.wait_lr = self.wait_stop = 0
        self.scale = 1.0
        self.best_step = 0

    def update(self, value: float, step: int) -> tuple[bool, bool]:
        """Record one evaluation; returns (improved, stop)."""
        v = self.sign * value
        improved = v < self.best - self.min_delta
        if improved:
            self.best, self.best_step = v, step
            self.wait_lr = self.wait_stop = 0
            return True, False
        self.wait_lr += 1
        self.wait_stop += 1
        if self.patience_lr and self.wait_lr >= self.patience_lr:
            self.scale *= self.factor
            self.wait_lr = 0
        return False, bool(self.patience_stop and self.wait_stop >= self.patience_stop)

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("best", "wait_lr", "wait_stop", "scale", "best_step")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


@dataclass
class Trainables:
    """Everything a checkpoint must hold for a resumed run to reach the same weights."""

    model: nn.Module
    optimizer: Any
    scheduler: Any
    ema: EMA | None
    lab_sampler: IndexSampler
    unl_sampler: IndexSampler | None
    augmenter: Augmenter
    plateau: Plateau
    swa: Any = None  # torch.optim.swa_utils.AveragedModel
    method_state: nn.Module | None = None  # the method's running state (FlexMatch, FreeMatch, alignment)
    best_weights: dict[str, torch.Tensor] | None = None  # early stopping: the best-monitored weights (CPU)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(), "ema": self.ema.module.state_dict() if self.ema else None,
            "swa": self.swa.state_dict() if self.swa is not None else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "labeled_sampler": self.lab_sampler.state_dict(),
            "unlabeled_sampler": self.unl_sampler.state_dict() if self.unl_sampler else None,
            "augmenter": self.augmenter.state_dict(), "plateau": self.plateau.state_dict(),
            "best_weights": self.best_weights,
            "method_state": self.method_state.state_dict() if self.method_state is not None else None,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
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
        if self.swa is not None and state.get("swa") is not None:
            self.swa.load_state_dict(state["swa"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.lab_sampler.load_state_dict(state["labeled_sampler"])
        if self.unl_sampler is not None:
            self.unl_sampler.load_state_dict(state["unlabeled_sampler"])
        if state.get("augmenter") is not None:
            self.augmenter.load_state_dict(state["augmenter"])
        if state.get("plateau") is not None:
            self.plateau.load_state_dict(state["plateau"])
        self.best_weights = state.get("best_weights")
        if self.method_state is not None:
            if state.get("method_state") is None:
                raise RunDirError(f"{path}: checkpoint has no state for this method")
            self.method_state.load_state_dict(state["method_state"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def finite(self) -> bool:
        return bool(torch.stack([p.isfinite().all() for p in self.model.parameters()]).all())


def evaluated_weights(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """The weights a finished run evaluated (SWA average > EMA > the model), and which they are."""
    if state.get("final") is not None:
        return state["final"], state.get("final_kind", "model")
    if state.get("ema") is not None:
        return state["ema"], "ema"
    return state["model"], "model"


@dataclass
class Result:
    model: nn.Module
    metrics: dict[str, Any]
    run_dir: Path | None
    config: RunConfig


def _check_model(model: nn.Module, data: TrainData, device: torch.device, view=None) -> None:
    """A forward on two samples, so that a shape mismatch is one clear error, not a deep traceback."""
    probe = data.x_l[:2].to(device)
    probe = view(probe) if view is not None else probe
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(probe)
    except Exception as exc:  # any failure here is the user's model rejecting the input shape
        raise ConfigError(f"the model does not take inputs of shape {tuple(probe.shape[1:])}: {str(exc).splitlines()[0]}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.shape != (len(probe), data.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"the model must map a batch to logits ({len(probe)}, {data.num_classes}); it returned {shape}")


def model_from_config(cfg: RunConfig, data: TrainData) -> nn.Module:
    return build_model(cfg.model.name, data.in_shape, data.num_classes, dropout=cfg.model.dropout, hidden=cfg.model.hidden)


def _finished_run(run_dir: Path, what: str) -> tuple[RunConfig, dict[str, Any]]:
    """The resolved config and the checkpoint of a finished run directory."""
    from .config import resolve

    for name in ("config.json", rundir.CHECKPOINT):
        if not (run_dir / name).exists():
            raise ConfigError(f"{what} {run_dir}: no {name}; train the {what} first")
    cfg = resolve(rundir.read_config(run_dir))
    return cfg, rundir.load_checkpoint(run_dir / rundir.CHECKPOINT)


def load_finished_model(run_dir: str | Path, data: TrainData, what: str = "run") -> tuple[nn.Module, str, int]:
    """(model with the weights a finished run evaluated, which weights they are, its last step)."""
    run_dir = Path(run_dir)
    cfg, state = _finished_run(run_dir, what)
    weights, kind = evaluated_weights(state)
    model = model_from_config(cfg, data)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ConfigError(f"{what} {run_dir}: checkpoint of another model ({mismatch(exc)})") from None
    return model, kind, int(state["step"])


def load_teacher(run_dir: str | Path, data: TrainData, device: torch.device) -> nn.Module:
    """The frozen, eval-mode model a finished run evaluated (its SWA/EMA weights where it used them)."""
    model, _, _ = load_finished_model(run_dir, data, "teacher")
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(deterministic, warn_only=False)


def _total_steps(cfg: RunConfig, n_labeled: int) -> int:
    t = cfg.train
    if t.epochs > 0:
        return math.ceil(t.epochs * n_labeled / t.batch_size)
    return t.steps


def unlabeled_batch_size(cfg: RunConfig, paper_mu: int | None) -> int:
    """train.unlabeled_batch_size if set, else mu * batch_size (mu: train.mu, else the method's paper value, else 1)."""
    t = cfg.train
    if t.unlabeled_batch_size > 0:
        return t.unlabeled_batch_size
    return (t.mu or paper_mu or 1) * t.batch_size


def _steps_per_epoch(cfg: RunConfig, n_labeled: int) -> int:
    return max(1, math.ceil(n_labeled / cfg.train.batch_size))


@torch.no_grad()
def recompute_bn(model: nn.Module, x: torch.Tensor, batch_size: int, view=None) -> None:
    """BatchNorm running statistics recomputed from scratch over `x` (what swa_utils.update_bn does)."""
    from torch.optim.swa_utils import update_bn

    batches = (view(x[i : i + batch_size]) if view else x[i : i + batch_size] for i in range(0, len(x), batch_size))
    update_bn(batches, model)


def train(cfg: RunConfig, run_dir: Path | None = None, *, model: nn.Module | None = None,
          data: TrainData | None = None, split: Split | None = None, resume: bool = False,
          overwrite: bool = False) -> Result:
    """Train `cfg` and return the trained model with its final metrics.

    With `run_dir`, the run directory receives config.json, meta.json, split.npz, metrics.jsonl,
    checkpoint.pt, results.json and the plots; `resume=True` continues from its checkpoint.
    With `train.devices` > 1 the ranks are spawned here and rank 0's result is returned.
    """
    if is_system(cfg.method["name"]):
        if model is not None:
            raise ConfigError(f"'{cfg.method['name']}' is a multi-network system: pass modules to fit_system, not a model")
        if cfg.train.devices * cfg.train.num_nodes > 1 or distributed.launched_externally():
            raise ConfigError("multi-network systems train in one process: train.devices and train.num_nodes must be 1")
        return train_system_config(cfg, run_dir, data=data, split=split, resume=resume, overwrite=overwrite)
    fabric, spawn = distributed.make_fabric(cfg.train)
    if spawn:  # errors the parent can see are raised here, not as a crashed child process
        world = cfg.train.devices * cfg.train.num_nodes
        distributed.Ranks(None, 0, world).check_divisible(**{
            "train.batch_size": cfg.train.batch_size,
            "unlabelled batch size": unlabeled_batch_size(cfg, get_method(cfg.method["name"]).mu)})
        if run_dir is not None:
            rundir.check_target(run_dir, overwrite=overwrite, resume=resume)
        with tempfile.TemporaryDirectory(prefix="semireg-ranks-") as handover:
            result_path = Path(handover) / "result.pt"
            fabric.launch(_train_spawned_rank, result_path, cfg, run_dir, model, data, split, resume, overwrite)
            return torch.load(result_path, weights_only=False)  # written a moment ago by our own rank 0
    return _train_rank(fabric, cfg, run_dir, model, data, split, resume, overwrite)


def _train_spawned_rank(fabric, result_path: Path, *args) -> None:
    """A spawned rank. Rank 0 hands its Result over in a file: through the launcher's return queue a
    large one would fill the pipe while the parent waits for the children to exit (a deadlock), and
    tensors shared through memory vanish with the process that owns them."""
    result = _train_rank(fabric, *args)
    if fabric.global_rank == 0:
        torch.save(result, result_path)


def _train_rank(fabric, cfg: RunConfig, run_dir: Path | None, model: nn.Module | None, data: TrainData | None,
                split: Split | None, resume: bool, overwrite: bool) -> Result:
    """The loop, as run by each data-parallel rank (or the only process)."""
    from torch.optim.swa_utils import AveragedModel

    ranks = distributed.Ranks.of(fabric)
    main = ranks.is_main
    t = cfg.train
    spec = get_method(cfg.method["name"])
    opts = method_options(cfg)
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    if data is None:
        data, split = data_from_config(cfg)
    if spec.uses_unlabeled(opts) and (data.x_u is None or len(data.x_u) == 0):
        raise ConfigError(f"method '{spec.name}' needs unlabelled images, but the unlabelled set is empty")
    if len(data.y_l) and (int(data.y_l.min()) < 0 or int(data.y_l.max()) >= data.num_classes):
        raise ConfigError(f"labels must lie in [0, {data.num_classes})")
    if spec.needs_teacher and not cfg.teacher:
        raise ConfigError(f"method '{spec.name}' needs a teacher: set teacher=RUN_DIR (a finished run)")
    if spec.needs_ema and t.ema_decay <= 0:
        raise ConfigError(f"method '{spec.name}' learns from an EMA of its weights: set train.ema_decay > 0 (e.g. 0.999)")
    if (t.plateau_patience or t.early_stop_patience) and "val" not in data.eval_sets:
        raise ConfigError("train.plateau_patience / train.early_stop_patience need a validation split (data.n_val > 0)")

    device = fabric.device
    teacher = load_teacher(cfg.teacher, data, device) if cfg.teacher else None
    init_weights = evaluated_weights(_finished_run(Path(cfg.init_from), "init_from run")[1])[0] if cfg.init_from else None
    unl_batch = unlabeled_batch_size(cfg, spec.mu)
    ranks.check_divisible(**{"train.batch_size": t.batch_size, "unlabelled batch size": unl_batch})
    if run_dir is not None:  # only once the data, the config and the teacher are known to be good
        if main:
            rundir.prepare(run_dir, overwrite=overwrite, resume=resume)
        ranks.barrier()
    _seed_everything(t.seed, t.deterministic)  # the same initial weights on every rank

    # Rank 0 draws the random numbers a single process would; the others their own streams.
    augmenter = Augmenter(cfg.augment, device, seed=t.seed * 2 + 3 + _RANK_SEED_STRIDE * ranks.rank)
    view = augmenter.eval_view
    model = model if model is not None else model_from_config(cfg, data)
    if init_weights is not None:
        try:
            model.load_state_dict(init_weights)
        except RuntimeError as exc:
            raise ConfigError(f"init_from {cfg.init_from}: another architecture ({mismatch(exc)})") from None
    model = model.to(device)
    _check_model(model, data, device, view)
    channels_last = t.channels_last and data.x_l.ndim == 4
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # `model` is the plain module (weights, EMA, evaluation, checkpoints); `step_model` what a step calls.
    step_model = torch.compile(model) if t.compile else model
    if ranks.world > 1:
        step_model = fabric.setup_module(step_model)  # DDP: gradients averaged over ranks in backward
    optimizer = fabric.setup_optimizers(build_optimizer(model.parameters(), cfg))
    total = _total_steps(cfg, len(data.y_l))
    per_epoch = _steps_per_epoch(cfg, len(data.y_l))
    plateau = Plateau("min" if t.monitor == "val_loss" else "max", t.plateau_patience, t.plateau_factor, t.early_stop_patience)
    swa_start = int(t.swa_start * total) if t.swa else total
    swa_every = t.swa_every or per_epoch

    def lr_at(s: int) -> float:
        if t.swa and t.swa_lr > 0 and s >= swa_start:
            return t.swa_lr / t.lr * plateau.scale
        return lr_factor(s, cfg, total) * plateau.scale

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    ema = EMA(model, t.ema_decay) if t.ema_decay > 0 else None
    swa = AveragedModel(model) if t.swa else None

    # Data on the training device once; batches are index lookups from here on.
    x_l, y_l = data.x_l.to(device), data.y_l.to(device)
    x_u = data.x_u.to(device) if spec.uses_unlabeled(opts) else None
    # Samplers draw global batches (the same on every rank); each rank keeps its share.
    lab_sampler = IndexSampler(len(y_l), t.batch_size, seed=t.seed * 2 + 1, device=device)
    unl_sampler = IndexSampler(len(x_u), unl_batch, seed=t.seed * 2 + 2, device=device) if x_u is not None else None
    # The method's running state (thresholds, class statistics): buffers on the device, checkpointed.
    method_state = spec.make_state(opts, data.num_classes, len(x_u) if x_u is not None else 0).to(device) \
        if spec.make_state is not None else None

    parts = Trainables(model, optimizer, scheduler, ema, lab_sampler, unl_sampler, augmenter, plateau, swa,
                       method_state=method_state)
    start, elapsed = 0, 0.0
    if run_dir is not None:
        metrics_path = run_dir / "metrics.jsonl"
        if resume:
            state = rundir.load_checkpoint(run_dir / rundir.CHECKPOINT)
            parts.load_state_dict(state, run_dir / rundir.CHECKPOINT)
            start, elapsed = int(state["step"]), float(state["elapsed"])
            _restore_rank_rng(state, ranks, augmenter, t.seed)
            if main:
                rundir.truncate_jsonl(metrics_path, start)
        elif main:
            rundir.write_json(run_dir / "config.json", cfg.to_dict())
            rundir.write_json(run_dir / "meta.json", {
                "code": rundir.code_version(), "seed": t.seed, "hardware": rundir.hardware(),
                "device": str(device), "precision": t.precision, "world_size": ranks.world, "data": data.summary(),
                "total_steps": total, "unlabeled_batch_size": unl_batch if x_u is not None else 0,
                "evaluated_weights": "swa" if swa else "ema" if ema else "model",
                "teacher": cfg.teacher or None, "init_from": cfg.init_from or None,
            })
            if split is not None:
                split.save(run_dir / "split.npz")
    if not resume and ranks.rank > 0:
        torch.manual_seed(t.seed + _RANK_SEED_STRIDE * ranks.rank)  # dropout, VAT's random directions

    def sync_state() -> None:
        """Before evaluating or saving: one set of BatchNorm statistics for all ranks, and a check that
        the trained weights and the method's state really are the same on every rank."""
        ranks.average_buffers(model, ema.module if ema else None)
        ranks.assert_same("the weights", list(model.parameters()))
        if method_state is not None:
            ranks.assert_same("the method's state", list(method_state.buffers()))

    def checkpoint(step: int, extra: dict[str, Any] | None = None) -> None:
        if run_dir is None:
            return
        if not parts.finite():  # never replace the last good checkpoint with a broken one
            raise DivergedError(f"weights are not finite at step {step}; last good checkpoint kept in {run_dir}")
        extra = dict(extra or {})
        if ranks.world > 1:  # each rank's random streams, so that a resume with as many ranks continues them
            extra["rng_by_rank"] = ranks.objects({"torch": torch.get_rng_state(), "augmenter": augmenter.state_dict()})
        if main:
            rundir.save_checkpoint(run_dir / rundir.CHECKPOINT,
                                   {"step": step, "elapsed": elapsed, "config": cfg.to_dict(), **parts.state_dict(), **extra})
        ranks.barrier()  # no rank reads a checkpoint that is still being written

    def to_format(x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    eval_model = ema.module if ema else model
    log = rundir.MetricsLog(run_dir, cfg.logger) if run_dir is not None and main else None
    meter = Meter()
    bar = _progress(total, start, t.progress and main)
    model.train()
    tick = time.perf_counter()
    stopped_at = None
    for step in range(start, total):
        idx = ranks.shard(lab_sampler.next())  # (B / world,)
        idx_u = ranks.shard(unl_sampler.next()) if unl_sampler is not None else None  # (Bu / world,)
        x_u_raw = x_u[idx_u] if idx_u is not None else None
        batch = Batch(
            x_l=to_format(augmenter.weak(x_l[idx])), y_l=y_l[idx],
            x_u=to_format(augmenter.weak(x_u_raw)) if x_u_raw is not None else None,
            strong=augmenter.strong, teacher=teacher, weak=augmenter.weak, x_u_raw=x_u_raw, idx_u=idx_u,
            ema=ema.module if ema is not None else None, state=method_state, progress=step / total,
            gather=ranks.gather,
        )
        with fabric.autocast():
            terms = spec.step(step_model, batch, opts)
        optimizer.zero_grad(set_to_none=True)
        fabric.backward(terms["loss"])
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update(model)
        done = step + 1
        if swa is not None and done > swa_start and (done - swa_start) % swa_every == 0:
            swa.update_parameters(model)
        meter.add(terms)

        is_last = done == total
        do_eval = is_last or (t.eval_every and done % t.eval_every == 0)
        do_ckpt = is_last or do_eval or (t.checkpoint_every and done % t.checkpoint_every == 0)
        stop = False
        if done % t.log_every == 0 or do_ckpt:
            elapsed += time.perf_counter() - tick
            logged = meter.flush(ranks.mean)
            if not all(math.isfinite(v) for v in logged.values()):
                bar.close()
                where = f"; the last good checkpoint is kept in {run_dir / rundir.CHECKPOINT}" if run_dir else ""
                raise DivergedError(f"loss became non-finite ({_fmt(logged)}) between steps {done - t.log_every + 1} and {done}{where}; lower train.lr or check the inputs")
            record = {"kind": "train", "step": done, "epoch": round(done * t.batch_size / len(y_l), 4),
                      "lr": scheduler.get_last_lr()[0], "time": round(elapsed, 3), **logged}
            if log is not None:
                log.write(record)
            bar.set_postfix(loss=f"{logged.get('loss', float('nan')):.4f}", acc=f"{logged.get('train_acc', float('nan')):.3f}", refresh=False)
            if do_eval or do_ckpt or stop:
                sync_state()
            if do_eval:
                for name, (x, y) in data.eval_sets.items():
                    m = summary(_metrics_on(eval_model, x, y, data.num_classes, view, ranks))
                    if log is not None:
                        log.write({"kind": "eval", "step": done, "split": name, "time": round(elapsed, 3), **m})
                    bar.set_postfix(loss=f"{logged.get('loss', 0):.4f}", **{f"{name}_acc": f"{m['accuracy']:.4f}"}, refresh=False)
                    if name == "val" and (t.plateau_patience or t.early_stop_patience):
                        improved, stop = plateau.update(m["loss"] if t.monitor == "val_loss" else m["accuracy"], done)
                        if improved and t.early_stop_patience and t.restore_best and swa is None:  # SWA ends on its average
                            parts.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in eval_model.state_dict().items()}
            if do_ckpt or stop:
                checkpoint(done)
            tick = time.perf_counter()
        bar.update(1)
        if stop:
            stopped_at = done
            break
    bar.close()
    if log is not None:
        log.close()

    final_kind = "swa" if swa is not None else "ema" if ema else "model"
    if stopped_at is not None or (t.early_stop_patience and t.restore_best):
        if parts.best_weights is not None and swa is None:
            eval_model.load_state_dict(parts.best_weights)
            final_kind += f"@best(step {plateau.best_step})"
    if swa is not None:
        if swa.n_averaged.item() == 0:  # stopped before the averaging window: average the last weights
            swa.update_parameters(model)
        recompute_bn(swa.module, x_l, max(t.batch_size, 256), view)
        eval_model = swa.module
    final = _final_metrics(eval_model, data, cfg, total, elapsed, final_kind, view, ranks)
    final["stopped_at"] = stopped_at
    if ranks.world > 1:
        final["world_size"] = ranks.world
    if run_dir is not None:
        checkpoint(stopped_at or total, {"final": eval_model.state_dict(), "final_kind": final_kind})
        if main:
            _write_outputs(run_dir, final, data)
    return Result(model=eval_model, metrics=final, run_dir=run_dir, config=cfg)


_RANK_SEED_STRIDE = 1_000_003  # rank r > 0 seeds its random streams seed + r * stride (rank 0: as one process)


def _restore_rank_rng(state: dict[str, Any], ranks: distributed.Ranks, augmenter: Augmenter, seed: int) -> None:
    """After loading a checkpoint (which holds rank 0's random state): give each rank its own streams.
    Resumed with as many ranks as wrote it, each continues its own; with another count, ranks > 0
    draw fresh streams from (seed, step, rank). The sample order does not depend on this."""
    if ranks.world == 1:
        return
    saved = state.get("rng_by_rank") or []
    if len(saved) == ranks.world:
        torch.set_rng_state(saved[ranks.rank]["torch"])
        augmenter.load_state_dict(saved[ranks.rank]["augmenter"])
    elif ranks.rank > 0:
        fresh = seed + _RANK_SEED_STRIDE * ranks.rank + 7 * int(state["step"])
        torch.manual_seed(fresh)
        augmenter.generator.manual_seed(fresh * 2 + 3)


def train_system_config(cfg: RunConfig, run_dir: Path | None = None, *, data: TrainData | None = None,
                        split: Split | None = None, resume: bool = False, overwrite: bool = False,
                        modules: dict[str, nn.Module] | None = None):
    """Build the registered system `cfg.method.name` (with any user `modules`) and train it in phases."""
    from .phases import train_system
    from .systems import get_system

    spec = get_system(cfg.method["name"])
    if data is None:
        data, split = data_from_config(cfg)
    torch.manual_seed(cfg.train.seed)  # the networks' initial weights
    system = spec.build(data.in_shape, data.num_classes, method_options(cfg), modules)
    return train_system(cfg, system, data, run_dir, split=split, resume=resume, overwrite=overwrite)


def evaluate_finished_system(run_dir: str | Path, data: TrainData) -> dict[str, Any]:
    """Rebuild a system run's networks from its checkpoint and run the system's full evaluation
    again (pictures included, written to the run directory). Works on an unfinished run's last
    checkpoint too; the round is recorded."""
    from .systems import get_system

    run_dir = Path(run_dir)
    cfg, state = _finished_run(run_dir, "run")
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


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in values.items())


def _progress(total: int, start: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, dynamic_ncols=True, mininterval=1.0, leave=False)


def _final_metrics(eval_model: nn.Module, data: TrainData, cfg: RunConfig, total: int, elapsed: float,
                   kind: str, view=None, ranks: distributed.Ranks | None = None) -> dict[str, Any]:
    epochs = total * cfg.train.batch_size / max(1, len(data.y_l))
    out: dict[str, Any] = {
        "steps": total, "epochs": epochs, "train_time_s": round(elapsed, 2),
        "time_per_epoch_s": round(elapsed / epochs, 3) if epochs else None,
        "evaluated_weights": kind,
    }
    for name, (x, y) in data.eval_sets.items():
        out[name] = _metrics_on(eval_model, x, y, data.num_classes, view, ranks)
    return out


def _metrics_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, view=None,
                ranks: distributed.Ranks | None = None) -> dict[str, Any]:
    def predict(part: torch.Tensor) -> torch.Tensor:
        return predict_logits(model, part, transform=view)  # (n, K)

    logits = ranks.predict(predict, x) if ranks is not None else predict(x)  # (N, K), each rank a share
    m = classification_metrics(y.numpy(), logits.argmax(1).cpu().numpy(), num_classes)
    m["loss"] = float(torch.nn.functional.cross_entropy(logits, y.to(logits.device)))
    return m


def _write_outputs(run_dir: Path, final: dict[str, Any], data: TrainData) -> None:
    rundir.write_json(run_dir / "results.json", final)
    if "test" in final:
        plot_confusion(final["test"]["confusion"], run_dir / "confusion.png", data.class_names,
                       title=f"test confusion (accuracy {final['test']['accuracy']:.4f})")
    plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png")
    build_report(run_dir, data)
