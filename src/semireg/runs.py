"""The run lifecycle both training loops share: open a run directory (start or resume), the
log / evaluate / checkpoint schedule, train and eval records with the divergence check, the
finite-checked atomic checkpoint with every rank's random state, and the final outputs.

A loop (the step loop in `engine`, the phase loop in `phase_loop`) keeps its optimizer steps
written out and calls these at the places it chooses; nothing here runs code of the loop's:

    run, saved = open_run(cfg, run_dir, ..., meta=...)     # the writer lock, config/meta/split or resume
    for step in range(run.start, total):
        ... forward, backward, optimizer.step() ...
        due = run.due(done)
        if due.log:  run.train_record(done, meter.flush())  # raises DivergedError on a non-finite term
        if due.eval: run.eval_record(done, metrics)
        if due.checkpoint: run.save(done, state_dict, params)
    run.finish(results, data, plot_curves)                  # results.json, plots, report.html
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import rundir
from .config import RunConfig, TrainConfig
from .data import Split
from .distributed import Ranks
from .errors import DivergedError, RunDirError
from .evaluation import plot_confusion
from .report.html import build_report
from .traindata import fingerprint_differences

RANK_SEED_STRIDE = 1_000_003  # rank r > 0 seeds its random streams seed + r * stride (rank 0: as one process)


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(deterministic, warn_only=False)


def total_steps(t: TrainConfig, n_labeled: int) -> int:
    """`train.steps`, or `train.epochs` of the labelled images (epochs are a view of steps)."""
    if t.epochs > 0:
        return math.ceil(t.epochs * n_labeled / t.batch_size)
    return t.steps


def progress_bar(total: int, start: int, enabled: bool):
    return tqdm(total=total, initial=start, disable=not enabled, dynamic_ncols=True, mininterval=1.0, leave=False)


def format_terms(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in values.items())


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

    def flush(self, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda v: v) -> dict[str, float]:
        """Means since the last flush; `reduce` averages them across data-parallel ranks (one collective)."""
        if not self.count:
            return {}
        keys = list(self.sums)
        values = reduce(torch.stack([self.sums[k] for k in keys]).div(self.count)).tolist()
        self.sums, self.count = {}, 0
        return dict(zip(keys, values))


@dataclass(frozen=True)
class Due:
    """What happens after a step: a train record, an evaluation, a checkpoint."""

    log: bool
    eval: bool
    checkpoint: bool
    last: bool


def schedule(done: int, total: int, t: TrainConfig) -> Due:
    """Evaluate every `eval_every` steps and at the last one; checkpoint at every evaluation, every
    `checkpoint_every` steps and at the end; log every `log_every` steps and wherever either happens."""
    last = done == total
    evaluate = last or bool(t.eval_every and done % t.eval_every == 0)
    checkpoint = evaluate or bool(t.checkpoint_every and done % t.checkpoint_every == 0)
    return Due(log=checkpoint or done % t.log_every == 0, eval=evaluate, checkpoint=checkpoint, last=last)


# ----------------------------------------------------------------------------- random streams


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "generators": {k: g.get_state() for k, g in generators.items()}}


def restore_rng(saved: dict[str, Any], ranks: Ranks, generators: dict[str, torch.Generator], seed: int) -> None:
    """After a checkpoint is loaded: rank 0's streams are the saved ones. Resumed with as many ranks
    as wrote it, each rank continues its own; with another count, ranks > 0 draw fresh streams from
    (seed, step, rank). The sample order does not depend on this."""
    torch.set_rng_state(saved["torch_rng"])
    if saved.get("cuda_rng"):
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    by_rank = saved.get("rng_by_rank") or []
    if ranks.world == 1:
        for name, g in generators.items():
            g.set_state(saved["generators"][name])
    elif len(by_rank) == ranks.world:
        torch.set_rng_state(by_rank[ranks.rank]["torch"])
        for name, g in generators.items():
            g.set_state(by_rank[ranks.rank]["generators"][name])
    else:
        for name, g in generators.items():
            g.set_state(saved["generators"][name])
        if ranks.rank > 0:
            fresh = seed + RANK_SEED_STRIDE * ranks.rank + 7 * int(saved["step"])
            torch.manual_seed(fresh)
            for i, g in enumerate(generators.values()):
                g.manual_seed(fresh * 2 + 3 + i)


# ----------------------------------------------------------------------------- the run


@dataclass
class Run:
    """One run being trained: where it writes (nothing when `dir` is None or on ranks > 0), the
    step it starts from, the training time so far (evaluation and checkpoints not counted)."""

    dir: Path | None
    cfg: RunConfig
    total: int
    main: bool = True
    ranks: Ranks = field(default_factory=lambda: Ranks(None))
    start: int = 0
    elapsed: float = 0.0
    logged_through: int = 0  # the last step a train record covers
    log: rundir.MetricsLog | None = None
    held: ExitStack = field(default_factory=ExitStack)  # the writer lock
    tick: float = field(default_factory=time.perf_counter)

    @property
    def metrics_path(self) -> Path | None:
        return self.dir / "metrics.jsonl" if self.dir is not None else None

    def due(self, done: int) -> Due:
        return schedule(done, self.total, self.cfg.train)

    def restart_clock(self) -> None:
        """Training time resumes counting here (after an evaluation or a checkpoint)."""
        self.tick = time.perf_counter()

    def train_record(self, done: int, logged: dict[str, float], **fields: Any) -> dict[str, Any]:
        """Log the means of the terms since the last record; a non-finite one stops the run."""
        self.elapsed += time.perf_counter() - self.tick
        if not all(math.isfinite(v) for v in logged.values()):
            where = f"; the last good checkpoint is kept in {self.dir / rundir.CHECKPOINT}" if self.dir else ""
            raise DivergedError(
                f"loss became non-finite ({format_terms(logged)}) between steps "
                f"{self.logged_through + 1} and {done}{where}; lower train.lr or check the inputs"
            )
        record = {"kind": "train", "step": done, **fields, "time": round(self.elapsed, 3), **logged}
        self.write(record)
        self.logged_through = done
        return record

    def eval_record(self, done: int, metrics: dict[str, Any], **fields: Any) -> None:
        self.write({"kind": "eval", "step": done, **fields, "time": round(self.elapsed, 3), **metrics})

    def write(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write(record)

    def save(
        self,
        done: int,
        state: Callable[[], dict[str, Any]],
        params: Iterable[torch.Tensor],
        generators: dict[str, torch.Generator] | None = None,
    ) -> None:
        """The checkpoint at step `done`: `state()` (the loop's trainables) + step, training time,
        config and every rank's random streams, written atomically by rank 0; never written when a
        weight is not finite, so the last good checkpoint survives a divergence."""
        if self.dir is None:
            return
        if not all(bool(p.isfinite().all()) for p in params):
            raise DivergedError(f"weights are not finite at step {done}; last good checkpoint kept in {self.dir}")
        generators = generators or {}
        extra: dict[str, Any] = {}
        if self.ranks.world > 1:  # each rank's streams, so that a resume with as many ranks continues them
            extra["rng_by_rank"] = self.ranks.objects(rng_state(generators))
        if self.main:
            mine = rng_state(generators)
            rundir.save_checkpoint(
                self.dir / rundir.CHECKPOINT,
                {
                    "step": done,
                    "elapsed": self.elapsed,
                    "config": self.cfg.to_dict(),
                    **state(),
                    "torch_rng": mine["torch"],
                    "generators": mine["generators"],
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                    **extra,
                },
            )
        self.ranks.barrier()  # no rank reads a checkpoint that is still being written

    def finish(self, results: dict[str, Any], data: Any, plot_curves: Callable[[Path, Path], None]) -> None:
        """results.json, the confusion matrix and curves, report.html; then the lock is released."""
        if self.log is not None:
            self.log.close()
        if self.dir is not None and self.main:
            rundir.write_json(self.dir / "results.json", results)
            test = results.get("test")
            if isinstance(test, dict) and "confusion" in test:
                plot_confusion(
                    test["confusion"],
                    self.dir / "confusion.png",
                    data.class_names,
                    title=f"test confusion (accuracy {test['accuracy']:.4f})",
                )
            plot_curves(self.dir / "metrics.jsonl", self.dir / "curves.png")
            build_report(self.dir, data)
        self.close()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        self.held.close()


def check_same_data(run_dir: Path, now: dict[str, str] | None, what: str) -> None:
    """Refuse to go on with a run directory on other data than it recorded (meta.json's fingerprint):
    one line naming the parts that differ. A run from before fingerprints has nothing to compare."""
    meta_path = run_dir / "meta.json"
    saved = json.loads(meta_path.read_text()).get("fingerprint") if meta_path.exists() else None
    if saved is None or now is None:
        return
    differ = fingerprint_differences(saved, now)
    if differ:
        raise RunDirError(
            f"{what} {run_dir}: the data differs from the data this run recorded ({', '.join(differ)} "
            "rows changed); a run goes on only on its own data: start a new run, or --overwrite this one"
        )


def open_run(
    cfg: RunConfig,
    run_dir: Path | None,
    *,
    total: int,
    resume: bool,
    overwrite: bool,
    meta: dict[str, Any],
    split: Split | None = None,
    ranks: Ranks | None = None,
) -> tuple[Run, dict | None]:
    """Start a run directory (config.json, meta.json, split.npz) or resume one (its checkpoint is
    returned for the loop to load; metrics.jsonl is cut back to the checkpoint's step). Rank 0
    takes the writer lock first, so a second process writing the same directory is refused.
    Call it once the data, config and teacher are known to be good: nothing is touched before."""
    ranks = ranks or Ranks(None)
    run = Run(run_dir, cfg, total, main=ranks.is_main, ranks=ranks)
    if run_dir is None:
        return run, None
    try:
        if run.main:
            rundir.check_target(run_dir, overwrite=overwrite, resume=resume)  # before anything is created
            run.held.enter_context(rundir.writer_lock(run_dir))
            rundir.prepare(run_dir, overwrite=overwrite, resume=resume)
        ranks.barrier()
        saved = None
        if resume:
            check_same_data(run_dir, meta.get("fingerprint"), "resume")
            saved = rundir.load_checkpoint(run_dir / rundir.CHECKPOINT)
            run.start = run.logged_through = int(saved["step"])
            run.elapsed = float(saved["elapsed"])
            if run.main:
                rundir.truncate_jsonl(run_dir / "metrics.jsonl", run.start)
        elif run.main:
            rundir.write_json(run_dir / "config.json", cfg.to_dict())
            rundir.write_json(
                run_dir / "meta.json",
                {"code": rundir.code_version(), "seed": cfg.train.seed, "hardware": rundir.hardware(), **meta},
            )
            if split is not None:
                split.save(run_dir / "split.npz")
        if run.main:
            run.log = rundir.MetricsLog(run_dir, cfg.logger)
    except BaseException:
        run.close()
        raise
    return run, saved
