"""`semireg select`: does semi-supervised learning help on this data, and with which method?

Labels-only and each candidate method are trained with one configuration (the user's recipe and
overrides, the method swapped) on k folds of the labelled set: fold i validates on the i-th part of
the labels and trains on the rest, with the same unlabelled pool in every fold. The test set, if
the data has one, is never read during the search. Every candidate in every fold is an ordinary
run directory (`OUT/fold<i>/<method>`), so an interrupted search continues where it stopped, and
the comparison page is the usual report of those runs.

The budget is the wall time of the whole search. A short probe (a few steps of each candidate on
fold 0) measures each candidate's time per step and per run; every candidate then trains the same
number of steps, the most that fits the budget, capped at the configuration's `train.steps`.

How sure the answer is: the best method's paired difference to every other candidate over the
folds (same labels, same validation samples), as mean ± standard error. A difference below two
standard errors, or not positive on every fold, is reported as within noise. Each fold's accuracy
moves in steps of one validation sample, which the table states.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import rundir, runs
from .classical import CLASSICAL
from .config import CLASSICAL_TRAIN_KEYS, RunConfig, merge, resolve
from .engine import Result, fill_data_defaults, train
from .errors import BudgetError, ConfigError, RunDirError
from .methods import METHODS
from .report.compare import config_key
from .report.html import build_comparison
from .traindata import TrainData, fingerprint_differences

PROBE_STEPS = 20
MIN_STEPS = 20
# The share of the budget left after the probe that the plan fills: runs measured here took up to
# ~12 % longer per step than their probe (measured on MNIST), and the plan cannot adapt once it runs.
PLAN_SHARE = 0.9
PLAN = "selection.json"
# The default output: one directory per data set under it (`<name>-<hash of the data>`), so that a
# search on other data never continues this one's runs.
DEFAULT_OUT = Path("runs/select")


def default_candidates(data: TrainData | None = None) -> list[str]:
    """Labels-only first, then every registered method that needs no teacher run; on vectors the
    classical methods too (on images a neighbour graph of raw pixels is seldom a contender, and its
    distances grow with the square of the rows)."""
    neural = ["supervised"] + sorted(n for n, s in METHODS.items() if n != "supervised" and not s.needs_teacher)
    return neural + (sorted(CLASSICAL) if data is not None and data.x_l.ndim == 2 else [])


def parse_budget(text: str | float | int) -> float:
    """Seconds from '90', '90s', '10m' or '1.5h'."""
    if isinstance(text, (int, float)):
        return float(text)
    units = {"s": 1, "m": 60, "h": 3600}
    value, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    try:
        seconds = float(value) * unit
    except ValueError:
        raise ConfigError(f"--budget: '{text}' is not a duration (e.g. 300, 90s, 10m, 1h)") from None
    if seconds <= 0:
        raise ConfigError(f"--budget must be positive, got '{text}'")
    return seconds


def fold_indices(y: torch.Tensor, folds: int, seed: int) -> list[np.ndarray]:
    """Validation indices of each fold; stratified when every class has at least `folds` labels."""
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    if folds > len(y):
        raise ConfigError(f"--folds {folds}: more folds than the {len(y)} labelled samples")
    from sklearn.model_selection import KFold, StratifiedKFold  # lazy: ~2 s of every command's start-up

    labels = y.numpy()
    counts = np.bincount(labels)
    if counts[counts > 0].min() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels)
    else:  # a class with fewer labels than folds: plain folds (some training folds miss it)
        splitter = KFold(folds, shuffle=True, random_state=seed).split(labels)
    return [np.sort(val) for _, val in splitter]


def fold_data(data: TrainData, val: np.ndarray) -> TrainData:
    """Train on the labels outside `val`, validate on `val`; the unlabelled pool is unchanged."""
    keep = torch.ones(len(data.y_l), dtype=torch.bool)
    keep[torch.from_numpy(val)] = False
    idx = torch.from_numpy(val)
    return TrainData(
        x_l=data.x_l[keep],
        y_l=data.y_l[keep],
        x_u=data.x_u,
        num_classes=data.num_classes,
        eval_sets={"val": (data.x_l[idx], data.y_l[idx])},
        class_names=data.class_names,
        name=data.name,
        num_classes_reason=data.num_classes_reason,
        feature_stats=data.feature_stats,
    )


def candidate_config(base: dict[str, Any], method: str, steps: int, seed: int, name: str) -> RunConfig:
    """The user's configuration with the method swapped (its own options kept when it is the
    configured method), `steps` steps, no progress bar. Mean Teacher learns from an EMA of the
    weights: it gets decay 0.99 when the configuration keeps none. A classical candidate keeps only
    what it reads (the data, the seed, the threads and the device): the model, the views and the
    optimisation the user set are the neural candidates'."""
    tree = json.loads(json.dumps(base))
    tree["method"] = tree["method"] if tree.get("method", {}).get("name") == method else {"name": method}
    if method in CLASSICAL:
        kept = {k: v for k, v in tree.get("train", {}).items() if k in CLASSICAL_TRAIN_KEYS}
        tree = {"name": name, "data": tree.get("data", {}), "method": tree["method"], "train": kept}
        return resolve(merge(tree, {"train.seed": seed, "train.progress": False}))
    extra: dict[str, Any] = {
        "train.steps": steps,
        "train.epochs": 0.0,
        "train.seed": seed,
        "train.progress": False,
        "train.eval_every": 0,
        "name": name,
    }
    if METHODS[method].needs_ema and tree.get("train", {}).get("ema_decay", 0.0) <= 0:
        extra["train.ema_decay"] = 0.99
    return resolve(merge(tree, extra))


@dataclass
class Cost:
    step_s: float  # seconds per training step
    run_s: float  # seconds per run besides the steps (building, evaluating, writing the run directory)


def probe(
    base: dict[str, Any], data: TrainData, methods: list[str], seed: int, in_memory: bool = False
) -> dict[str, Cost]:
    """Each candidate's cost, from PROBE_STEPS steps into a scratch run directory (none `in_memory`)."""
    costs = {}
    with tempfile.TemporaryDirectory(prefix="semireg-probe-") as tmp:
        for method in methods:
            cfg = candidate_config(base, method, PROBE_STEPS, seed, f"probe/{method}")
            start = time.perf_counter()
            result = quiet_train(cfg, None if in_memory else Path(tmp) / method, data)
            wall = time.perf_counter() - start
            if method in CLASSICAL:  # one fit, whatever the steps
                costs[method] = Cost(0.0, wall)
                continue
            step_s = result.metrics["train_time_s"] / PROBE_STEPS
            costs[method] = Cost(step_s, max(0.0, wall - result.metrics["train_time_s"]))
    return costs


def steps_that_fit(costs: dict[str, Cost], seconds: float, folds: int, max_steps: int) -> int:
    """The most steps every candidate can train in every fold within PLAN_SHARE of `seconds`."""
    fixed = folds * sum(c.run_s for c in costs.values())
    per_step = folds * sum(c.step_s for c in costs.values())
    steps = int((PLAN_SHARE * seconds - fixed) / per_step) if per_step > 0 else max_steps
    if steps < MIN_STEPS:
        need = fixed + MIN_STEPS * per_step
        raise BudgetError(
            f"the budget leaves {max(seconds, 0.0):.0f} s after the probe; {len(costs)} candidates x {folds} folds "
            f"need {need:.0f} s for {MIN_STEPS} steps each: raise the budget (`--budget`, or the estimator's "
            f"`budget=`), or search fewer methods or folds"
        )
    return min(steps, max_steps)


@dataclass
class Selection:
    """What the search found: per-candidate fold accuracies, the table, the recommendation."""

    out: Path | None  # None: a search in memory (no run directories)
    steps: int
    folds: list[np.ndarray]
    accuracy: dict[str, list[float]]  # method -> validation accuracy per fold
    run_time_s: dict[str, list[float]]
    recommended: str = ""
    verdict: str = ""
    table: str = ""
    fitted: dict[str, Any] = field(default_factory=dict)  # method -> results of the run on all labels
    trained: int = 0  # candidate runs this call trained (the others were finished before)
    # A search in memory keeps each run's class probabilities on its fold's validation rows, so that
    # a combination of candidates can be scored on the same folds: method -> [(N_val, K) per fold].
    val_probs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    val_labels: list[np.ndarray] = field(default_factory=list)  # (N_val,) per fold

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "folds": [f.tolist() for f in self.folds],
            "accuracy": self.accuracy,
            "run_time_s": self.run_time_s,
            "recommended": self.recommended,
            "verdict": self.verdict,
            "table": self.table,
            "fitted": self.fitted,
        }


def same_config(saved: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a run directory holds this candidate (the same result-changing keys and seed)."""
    seed = lambda c: c.get("train", {}).get("seed")
    return config_key(saved) == config_key(wanted) and seed(saved) == seed(wanted)


def quiet_train(cfg: RunConfig, run_dir: Path | None, data: TrainData) -> Result:
    """One candidate run; the per-run notices (precision, ...) are kept out of the search's progress
    bar and shown only if the run fails. A finished run is read, an interrupted one resumed."""
    fill_data_defaults(cfg, data)  # as the run records them, so that a finished run compares equal
    same = (
        run_dir is not None
        and (run_dir / "config.json").exists()
        and same_config(rundir.read_config(run_dir), cfg.to_dict())
    )
    if same:  # a run of this candidate: read or continued only when it saw this very data
        runs.check_same_data(run_dir, data.fingerprint(), "select: candidate")
    if same and (run_dir / "results.json").exists() and (run_dir / rundir.CHECKPOINT).exists():
        return Result(
            model=None, metrics=json.loads((run_dir / "results.json").read_text()), run_dir=run_dir, config=cfg
        )
    resume = same and (run_dir / rundir.CHECKPOINT).exists()  # another configuration's run is replaced
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return train(cfg, run_dir, data=data, resume=resume, overwrite=not resume)
    except BaseException:
        sys.stderr.write(captured.getvalue())
        raise


def search(
    base: dict[str, Any],
    data: TrainData,
    methods: list[str],
    folds: list[np.ndarray],
    steps: int,
    out: Path | None,
    seed: int,
    progress: bool,
) -> Selection:
    """Every candidate on every fold (fold-major, so a stopped search has whole folds)."""
    sel = Selection(out, steps, folds, {m: [] for m in methods}, {m: [] for m in methods})
    bar = runs.progress_bar(len(folds) * len(methods) * steps, 0, progress)
    for i, val in enumerate(folds):
        part = fold_data(data, val)
        for method in methods:
            bar.set_postfix_str(f"fold {i + 1}/{len(folds)} {method}", refresh=True)
            cfg = candidate_config(base, method, steps, seed + i, f"select/{method}")
            result = quiet_train(cfg, out / f"fold{i}" / method if out is not None else None, part)
            sel.trained += result.model is not None
            sel.accuracy[method].append(float(result.metrics["val"]["accuracy"]))
            sel.run_time_s[method].append(float(result.metrics["train_time_s"]))
            if out is None:
                sel.val_probs.setdefault(method, []).append(result.predict_proba(part.eval_sets["val"][0]))
            bar.update(steps)
        if out is None:
            sel.val_labels.append(part.eval_sets["val"][1].numpy())
    bar.close()
    return sel


def paired(a: list[float], b: list[float]) -> tuple[float, float, bool]:
    """(mean of a - b, its standard error, a > b on every fold)."""
    d = [x - y for x, y in zip(a, b)]
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else 0.0
    return statistics.mean(d), se, all(x > 0 for x in d)


def beyond_noise(diff: float, se: float, every_fold: bool) -> bool:
    return diff > 0 and every_fold and diff > 2 * se


def verdict(sel: Selection, reference: str = "supervised") -> tuple[str, str]:
    """(the recommended method, a sentence on how sure that is). Another method is recommended only
    when it beats the reference (labels only, unless told another) beyond noise; otherwise the
    reference is, since a lead the folds cannot tell from noise is no reason to change."""
    means = {m: statistics.mean(v) for m, v in sel.accuracy.items()}
    best = max(means, key=lambda m: (means[m], m == reference))  # a tie goes to the reference
    others = sorted((m for m in means if m != best), key=lambda m: -means[m])
    name = "labels only" if reference == "supervised" else reference
    if reference in means and best != reference:
        d, se, every = paired(sel.accuracy[best], sel.accuracy[reference])
        if not beyond_noise(d, se, every):
            return reference, (
                f"no method beats {name} beyond noise: the best mean, {best}, is ahead by "
                f"{100 * d:+.2f} ± {100 * se:.2f} points" + ("" if every else ", not on every fold")
            )
        lead = f"{best} beats {name} by {100 * d:+.2f} ± {100 * se:.2f} points, on every fold"
    elif best == reference:
        lead = f"{name} has the best mean: no other method beat it"
    else:
        lead = f"{best} has the best mean ({name} was not a candidate)"
    if others:
        d, se, every = paired(sel.accuracy[best], sel.accuracy[others[0]])
        clear = beyond_noise(d, se, every)
        lead += (
            f"; {'clearly ahead of' if clear else 'within noise of'} the runner-up {others[0]} "
            f"({100 * d:+.2f} ± {100 * se:.2f})"
        )
    return best, lead


def table(sel: Selection) -> str:
    n_val = [len(f) for f in sel.folds]
    head = (
        "| method | val accuracy (%), mean ± std over folds | worst fold | vs labels only (paired, ± se) | "
        "train s/run |\n|---|---|---|---|---|"
    )
    lines = [head]
    for m in sorted(sel.accuracy, key=lambda m: -statistics.mean(sel.accuracy[m])):
        acc = sel.accuracy[m]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        vs = "-"
        if "supervised" in sel.accuracy and m != "supervised":
            d, se, _ = paired(acc, sel.accuracy["supervised"])
            vs = f"{100 * d:+.2f} ± {100 * se:.2f}"
        lines.append(
            f"| {m} | {100 * statistics.mean(acc):.2f} ± {100 * std:.2f} | {100 * min(acc):.2f} | {vs} | "
            f"{statistics.mean(sel.run_time_s[m]):.1f} |"
        )
    lines.append(
        f"\n{len(sel.folds)} folds of the labelled set, {min(n_val)}-{max(n_val)} validation samples each "
        f"(one sample = {100 / min(n_val):.1f} points); {sel.steps} steps per run; the test set unused."
    )
    return "\n".join(lines)


def plan(
    base: dict[str, Any],
    data: TrainData,
    methods: list[str],
    folds: int,
    budget_s: float,
    out: Path | None,
    seed: int,
) -> tuple[list[np.ndarray], int, dict[str, Any]]:
    """(fold indices, steps per run, the plan as saved): a search started before continues with its
    own plan, so that resumed runs train the steps they were started with."""
    saved_path = out / PLAN if out is not None else None
    fingerprint = data.fingerprint()
    if saved_path is not None and saved_path.exists():
        saved = json.loads(saved_path.read_text()).get("plan", {})
        differ = fingerprint_differences(saved["fingerprint"], fingerprint) if "fingerprint" in saved else []
        if differ:
            raise RunDirError(
                f"select: {out} holds a search on other data ({', '.join(differ)} rows differ); "
                "pass another --out, or remove that directory"
            )
        if saved.get("methods") == methods and saved.get("n_folds") == folds and saved.get("labeled") == len(data.y_l):
            return [np.array(f, dtype=np.int64) for f in saved["folds"]], int(saved["steps"]), saved
    val = fold_indices(data.y_l, folds, seed)
    start = time.perf_counter()
    costs = probe(base, fold_data(data, val[0]), methods, seed, in_memory=out is None)
    left = budget_s - (time.perf_counter() - start)
    steps = steps_that_fit(costs, left, folds, int(base.get("train", {}).get("steps", 1000)))
    saved = {
        "methods": methods,
        "n_folds": folds,
        "labeled": len(data.y_l),
        "budget_s": budget_s,
        "steps": steps,
        "probe_s": round(time.perf_counter() - start, 2),
        "folds": [f.tolist() for f in val],
        "costs": {m: vars(c) for m, c in costs.items()},
        "fingerprint": fingerprint,
    }
    if saved_path is not None:
        out.mkdir(parents=True, exist_ok=True)
        rundir.write_json(saved_path, {"plan": saved})
    return val, steps, saved


def data_dir_name(data: TrainData) -> str:
    """`<data set name>-<8 hex digits of its fingerprint>`: the default search directory of this data."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", data.name or "data").strip("-") or "data"
    short = hashlib.blake2b(json.dumps(data.fingerprint(), sort_keys=True).encode(), digest_size=4).hexdigest()
    return f"{name}-{short}"


def select_runs(
    base: dict[str, Any],
    data: TrainData,
    *,
    methods: list[str] | None = None,
    folds: int = 3,
    budget_s: float = 600.0,
    out: Path | None = Path("runs/select"),
    fit: bool = False,
    seed: int = 0,
    progress: bool = True,
    reference: str = "supervised",
) -> Selection:
    """The search (see the module's docstring); with `fit`, the recommended method and labels-only
    trained on all labels afterwards (`OUT/final/<method>`), evaluated on the data's test set.
    `reference` is what is recommended unless another candidate beats it beyond noise. With `out` None
    the search runs in memory: nothing written, nothing continued, no fits afterwards."""
    methods = list(methods or default_candidates(data))
    unknown = [m for m in methods if m not in METHODS and m not in CLASSICAL]
    if unknown:
        known = ", ".join(sorted([*METHODS, *CLASSICAL]))
        raise ConfigError(f"--methods: unknown method(s) {', '.join(unknown)} (known: {known})")
    teachers = [m for m in methods if m in METHODS and METHODS[m].needs_teacher]
    if teachers:
        raise ConfigError(f"--methods: {', '.join(teachers)} distil(s) from a teacher run and cannot be searched")
    start = time.perf_counter()
    if out is None and fit:
        raise ConfigError("select: fit=True writes its runs into out; give an output directory")
    if out == DEFAULT_OUT:
        out = DEFAULT_OUT / data_dir_name(data)
    before = 0.0
    if out is not None and (out / PLAN).exists():
        before = json.loads((out / PLAN).read_text()).get("search_wall_s", 0.0)
    val, steps, saved = plan(base, data, methods, folds, budget_s, out, seed)
    sel = search(base, data, methods, val, steps, out, seed, progress)
    sel.recommended, sel.verdict = verdict(sel, reference)
    # Wall time of the search over every call that trained part of it (a resumed search adds up).
    wall = before + (time.perf_counter() - start if sel.trained or not before else 0.0)
    sel.table = table(sel) + f" The search took {wall:.0f} s (budget {budget_s:.0f} s)."
    if fit:
        for method in dict.fromkeys([sel.recommended, "supervised"]):
            cfg = candidate_config(base, method, steps, seed, f"select/final/{method}")
            sel.fitted[method] = quiet_train(cfg, out / "final" / method, data).metrics
    if out is not None:
        runs_done = [out / f"fold{i}" / m for i in range(len(val)) for m in methods]
        build_comparison(runs_done, out / "compare.html", ("val.accuracy", "val.macro_f1", "train_time_s"))
        rundir.write_json(out / PLAN, {"plan": saved, "search_wall_s": round(wall, 1), **sel.to_json()})
    return sel


def fitted_lines(sel: Selection) -> list[str]:
    """Test accuracy of the runs on all labels, when the data has a test set."""
    lines = []
    for method, metrics in sel.fitted.items():
        test = metrics.get("test")
        where = sel.out / "final" / method
        lines.append(
            f"{method} on all labels: test accuracy {100 * test['accuracy']:.2f} % ({where})"
            if test
            else f"{method} on all labels: {where} (the data has no test set)"
        )
    return lines
