"""Headline figures, computed from run directories and benchmark outputs, written to
benchmarks/results/figures.json: one key per figure, with mean, std, n, the worst seed, every value,
the command that produced the runs, and the date. Nothing in that file is typed by hand.

    python benchmarks/reproduce/figures.py [KEY_PREFIX ...]     # recompute the figures whose runs exist

A figure is declared once in FIGURES: where its runs are (a glob of run directories, or a
benchmark JSON), what is read from each (a final metric, or the training time until an eval record
reaches a target), and the command that makes those runs. Figures whose inputs are missing are
reported and left as they were in figures.json; every issue adds its figures here.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "figures.json"

EQUAL_STEPS = (
    "semireg train {recipe} {variant}--seeds 0,1,2 train.steps=1000 train.progress=false {precision}"
    "--runs-root runs/issue16/{tag}   # benchmarks/speed/equal_steps.sh"
)


def equal_steps(recipe: str, variant: str, tag: str, precision: str) -> dict:
    command = EQUAL_STEPS.format(
        recipe=recipe,
        variant=f"--variant {variant} " if variant else "",
        tag=tag,
        precision=f"{precision} " if precision else "",
    )
    path = f"runs/issue16/{tag}/{recipe}/" + (f"{variant}/" if variant else "") + "seed*"
    return {"runs": path, "read": "final", "metric": "test.accuracy", "scale": 100, "unit": "%", "command": command}


def time_to(target: float) -> dict:
    """Training time (evaluation excluded) under the recipe's defaults (2,000 steps, evaluation every
    100, precision auto, 2 threads) until the official test set's macro-F1 first reaches `target`."""
    return {
        "runs": "runs/issue16/defaults/mnist-100-vat/vat/seed*",
        "read": "time_to",
        "metric": "macro_f1",
        "target": target,
        "unit": "s",
        "command": "semireg train mnist-100-vat --variant vat --seeds 0,1,2 train.progress=false "
        "--runs-root runs/issue16/defaults   # idle machine, one run at a time",
    }


def speedup(entry: str, mode: str = "auto_speedup") -> dict:
    return {
        "json": "benchmarks/results/precision-cpu.json",
        "path": [entry, mode],
        "unit": "x",
        "command": "python benchmarks/speed/precision.py   # idle machine, 2 threads, medians of interleaved rounds",
    }


SELECT = "bash benchmarks/reproduce/select.sh   # semireg select ... --fit, idle machine, defaults (2 threads, precision auto)"


def select_figure(dataset: str, field: str) -> dict:
    """From each seed's OUT/selection.json: the test accuracy (%) of the recommended method or of
    labels-only, both trained on all labels after the search (--fit); their difference; the
    search's wall time."""
    unit = "s" if field == "search_wall_s" else "%"
    return {
        "selection": f"runs/issue19/{dataset}/seed*/selection.json",
        "read": "select",
        "field": field,
        "unit": unit,
        "command": SELECT,
    }


def select_value(selection: dict, field: str) -> float:
    if field == "search_wall_s":
        return float(selection["search_wall_s"])
    test = {m: 100 * r["test"]["accuracy"] for m, r in selection["fitted"].items()}
    chosen, labels_only = test[selection["recommended"]], test["supervised"]
    return {
        "recommended_test_accuracy": chosen,
        "labels_only_test_accuracy": labels_only,
        "gain_over_labels_only": chosen - labels_only,
    }[field]


BEGAN = (
    "semireg train mnist-began --variant public --seeds 0,1,2 train.progress=false --runs-root runs/issue17   "
    "# benchmarks/reproduce/systems.sh, two runs side by side with train.threads=1"
)
DISENTANGLE = (
    "semireg train mnist-disentangle --variant {variant} --seeds 0,1,2 train.threads=1 train.progress=false "
    "--runs-root runs/issue17   # benchmarks/reproduce/systems.sh runs the seeds side by side, one thread each"
)


# jha-strong-adversary with 30 adversary steps a round (2026-12-05): seed 0 is the T_adv30 trial (resumed from its
# round-2,000 checkpoint and evaluated; config equal to these but for the run's name), copied in.
DISENTANGLE_ADV30 = (
    "cp -a ../runs/s5/T_adv30/mnist-disentangle/jha/seed0 runs/issue17/adv30/mnist-disentangle/jha-strong-adversary/seed0; "
    "semireg train mnist-disentangle --variant jha-strong-adversary --seeds S method.adv_steps=30 train.threads=1 "
    "train.progress=false --runs-root runs/issue17/adv30   # S = 1, 2 side by side, one thread each"
)


def system_figure(
    recipe: str,
    variant: str,
    metric: str,
    scale: float = 1,
    lower_is_better: bool = False,
    unit: str = "%",
    root: str = "runs/issue17",
    command: str = "",
) -> dict:
    """A final metric of a system recipe's runs (results.json), over its seeds."""
    runs = f"{root}/{recipe}/" + (f"{variant}/" if variant else "") + "seed*"
    command = command or (BEGAN if recipe == "mnist-began" else DISENTANGLE.format(variant=variant))
    return {
        "runs": runs,
        "read": "final",
        "metric": metric,
        "scale": scale,
        "unit": unit,
        "lower_is_better": lower_is_better,
        "command": command,
    }


# Since 2026-12-05 (commit 102c92b): the recipe on cnn_small with the weak view and the evaluated EMA, 3,000 steps.
# The 5 seeds before (cnn_seed001, 2,000 steps, runs/issue18/after; docs/results.md) were these keys' values until
# then; their entries were moved, as computed, to `mnist-100-vat.cnn_seed001.*` (runs no longer on this machine).
MNIST100_VAT_RUNS = "runs/issue18/vat-cnn_small/mnist-100-vat/vat/seed*"
MNIST100_VAT = (
    "semireg train mnist-100-vat --variant vat --seeds 0,1,2,3,4 train.progress=false "
    "--runs-root runs/issue18/vat-cnn_small   # defaults: 2 threads, precision auto; one run at a time"
)

PI_MNIST_RUNS = "runs/pi-mnist/mnist-100-pi/{variant}/seed*"
PI_MNIST = (
    "semireg train mnist-100-pi --variant {variant} --seeds 0,1,2,3,4 train.progress=false --runs-root runs/pi-mnist"
    "   # defaults: 2 threads, precision auto; one run at a time on an idle machine"
)


def mnist100_figure(runs: str, command: str, worst: bool = False, metric: str = "test.accuracy") -> dict:
    """An accuracy (%) of MNIST-100 runs over their seeds; `worst`: the figure is the worst seed."""
    return {
        "runs": runs,
        "read": "final",
        "metric": metric,
        "scale": 100,
        "unit": "%",
        "command": command,
        "reduce": "worst" if worst else "",
    }


# The MNIST-100 table (benchmarks/reproduce/mnist-100.sh): every mnist-100-<method> recipe x 5 seeds under
# runs/issue18/mnist/<recipe>/seed*; `supervised` is the protocol itself (mnist-100-ssl), `vat-entmin` is VAT on
# that protocol (the `vat` keys above are the mnist-100-vat recipe's, as the issue names them).
MNIST100_TABLE = {
    {"ssl": "supervised"}.get(suffix, suffix): f"mnist-100-{suffix}"
    for suffix in (
        p.stem.removeprefix("mnist-100-") for p in (ROOT / "src" / "semireg" / "recipes").glob("mnist-100-*.toml")
    )
    if suffix != "vat"
}
MNIST100 = (
    "semireg train {recipe} --seeds 0,1,2,3,4 train.progress=false --runs-root runs/issue18/mnist"
    "   # defaults (2 threads, precision auto), one run at a time on an idle machine (benchmarks/reproduce/mnist-100.sh)"
)


# vat-entmin on cnn_seed001, the recipe's network until the cnn_small trial on validation (docs/results.md); seed 0 is
# its selection run (the recipe's values as overrides), copied in.
MNIST100_VAT_ENTMIN_CNN001 = (
    "semireg train mnist-100-vat-entmin data.n_val=5000 train.steps=3000 train.batch_size=100 train.unlabeled_batch_size=128 "
    "method.balance=1.0 train.progress=false --runs-root ../runs/m1/vP1   # seed 0, at 389df3d (the recipe's values "
    "before they were the recipe's); cp -a ../runs/m1/vP1/mnist-100-vat-entmin runs/issue18/mnist-cnn001/mnist-100-vat-entmin/seed0; "
    "semireg train mnist-100-vat-entmin --seeds 1,2,3,4 train.progress=false --runs-root runs/issue18/mnist-cnn001"
    "   # at 831b654 (network cnn_seed001); defaults (2 threads, precision auto), one run at a time on an idle machine"
)


def pi_mnist_figures(variant: str, wall: bool = False) -> dict[str, dict]:
    """A permutation-invariant MNIST variant's test accuracy over its seeds, and (`wall`) its minutes a run."""
    runs, command = PI_MNIST_RUNS.format(variant=variant), PI_MNIST.format(variant=variant)
    figures = {f"mnist-100-pi/{variant}/test_accuracy": mnist100_figure(runs, command)}
    if wall:
        figures[f"mnist-100-pi/{variant}/wall_minutes"] = {
            "runs": runs,
            "read": "wall",
            "unit": "min",
            "lower_is_better": True,
            "command": command,
        }
    return figures


def mnist100_table_figure(method: str, worst: bool = False) -> dict:
    recipe = MNIST100_TABLE[method]
    return mnist100_figure(f"runs/issue18/mnist/{recipe}/seed*", MNIST100.format(recipe=recipe), worst=worst)


def best_of(figures: dict, keys: list[str], min_n: int = 5) -> str | None:
    """The key of the figure with the highest mean among `keys` that has at least `min_n` seeds."""
    ready = [
        (figures[k]["mean"], k)
        for k in keys
        if k in figures and figures[k]["n"] >= min_n and figures[k]["mean"] is not None
    ]
    return max(ready)[1] if ready else None


# One recipe per method (tests/test_ssl.py holds every registered method to it), so the keys follow the recipes.
CIFAR_CPU_METHODS = sorted(
    p.stem.removeprefix("cifar10-4000-cpu-")
    for p in (ROOT / "src" / "semireg" / "recipes").glob("cifar10-4000-cpu-*.toml")
)
CIFAR_CPU = "semireg train cifar10-4000-cpu-{method} {seeds}train.progress=false --runs-root {root}"
# The table on the machine CI runs on (2026-12-05: a 2-core Intel Xeon with AMX, precision auto = bf16-mixed), by
# `ROOT=runs/issue18/cifar-amx/table bash benchmarks/reproduce/cifar10-4000-cpu.sh`; the first table, on a 2-core fp32 AMD
# EPYC (2026-12-03/04, runs/issue18/cifar), was moved as computed to cifar10-4000-cpu.fp32-epyc.* keys.
CIFAR_CPU_TABLE = "runs/issue18/cifar-amx/table"
CIFAR_CPU_TABLE_EPYC = "runs/issue18/cifar"


def cifar_cpu_figure(method: str, field: str, root: str = CIFAR_CPU_TABLE) -> dict:
    """cifar10-4000-cpu, one method's runs: the seed-0 run (<root>/<recipe>) and the other seeds
    (<root>/seeds/<recipe>/seed*). `wall_minutes` is the run's wall time from its config.json to its
    results.json (evaluations included, data loading not)."""
    recipe = f"cifar10-4000-cpu-{method}"
    command = (
        CIFAR_CPU.format(method=method, seeds="", root=root)
        + "; (3-seed methods) "
        + CIFAR_CPU.format(method=method, seeds="--seeds 1,2 ", root=f"{root}/seeds")
        + "   # defaults (2 threads, precision auto), one run at a time on an idle machine"
    )
    spec = {"runs": [f"{root}/{recipe}", f"{root}/seeds/{recipe}/seed*"], "command": command}
    if field == "wall_minutes":
        return {**spec, "read": "wall", "unit": "min", "lower_is_better": True}
    return {**spec, "read": "final", "metric": "test.accuracy", "scale": 100, "unit": "%"}


# The crossing pair (issue 18): labels only and FixMatch at twice the protocol's budget, seed 0.
CIFAR_CPU_LONG = (
    "semireg train cifar10-4000-cpu-{method} train.steps=5000 train.progress=false --runs-root "
    "runs/issue18/cifar/long   # defaults (2 threads, precision auto), one run at a time on an idle machine"
)


# The same pair on a CPU with AMX (precision auto = bf16-mixed: ~6x faster steps than the fp32 machine above), at
# 15,000 steps and the classic EMA 0.999 (2026-12-05). Training minutes, not wall minutes: the FixMatch run was
# stopped at step 1,000 for other runs and resumed (`semireg train --resume`) an hour later.
CIFAR_CPU_AMX = (
    "semireg train cifar10-4000-cpu-{method} train.steps=15000 train.ema_decay=0.999 train.eval_every=1000 "
    "train.progress=false --runs-root runs/issue18/cifar-amx/long   # defaults (2 threads, precision auto = "
    "bf16-mixed on this AMX CPU), one run at a time on an idle machine"
)


def cifar_cpu_long_figure(
    method: str, field: str, root: str = "runs/issue18/cifar/long", command: str = CIFAR_CPU_LONG
) -> dict:
    """Training minutes, not wall minutes: the 5,000-step FixMatch run was paused inside its evaluations while
    other runs used the cores (docs/results.md); training time does not count evaluations."""
    spec = {"runs": [f"{root}/cifar10-4000-cpu-{method}"], "command": command.format(method=method)}
    if field == "train_minutes":
        return {
            **spec,
            "read": "final",
            "metric": "train_time_s",
            "scale": 1 / 60,
            "unit": "min",
            "lower_is_better": True,
        }
    return {**spec, "read": "final", "metric": "test.accuracy", "scale": 100, "unit": "%"}


# cifar10-consistency-cpu (issue 17, item 3): per seed, the student against its own teacher (the run directory's
# sibling `teacher`, a link where students of one teacher share it), on the whole test set (clean) and on the
# 15 corruptions x 5 severities (robustness.json of each); and the longer of the two stages in wall minutes,
# training and robustness evaluation.
CONSISTENCY_BEST = "finetune-swa"
CONSISTENCY = (
    "{env}bash benchmarks/reproduce/cifar10-consistency-cpu.sh   # semireg train cifar10-consistency-cpu --variant {variant} "
    "--stage teacher|student --seeds 0..2 train.threads=1{extra}, two side by side, --runs-root {root}; "
    "defaults otherwise (precision auto)"
)
# The students of 2026-12-05 (rule written before they ran: docs/results.md), on a CPU with AMX (precision auto =
# bf16-mixed), each seed's students against the same teacher (runs/issue17/.../finetune-swa/seedS/teacher, linked).
CONSISTENCY_AMX = {  # tag: (runs root, variant, student overrides, what ran)
    "finetune-swa": ("runs/issue17", "finetune-swa", "", ""),
    "finetune-swa-lr1.25e-4": ("runs/issue17-lr", "finetune-swa", "train.lr=1.25e-4", ""),
    "noisy-student-swa": ("runs/issue17", "noisy-student", "train.swa=true", "; seed 0's student only (the rule)"),
}
CONSISTENCY_FIELDS = (
    "student_minus_teacher_clean",
    "student_minus_teacher_c15x5",
    "stage_minutes_max",
    "student_val_accuracy",
)


def consistency_figure(field: str, tag: str = CONSISTENCY_BEST) -> dict:
    root, variant, extra, ran = CONSISTENCY_AMX[tag]
    env = "".join(f"{k}={v} " for k, v in (("VARIANT", variant), ("ROOT", root), ("EXTRA", extra)) if v)
    if extra:  # the students of other settings learn from the headline runs' teachers, linked
        env += "TEACHERS=runs/issue17 "
    command = (
        CONSISTENCY.format(env=env, variant=variant, extra=f" (student: {extra})" if extra else "", root=root) + ran
    )
    unit = {"stage_minutes_max": "min", "student_val_accuracy": "%"}.get(field, "points")
    return {
        "runs": f"{root}/cifar10-consistency-cpu/{variant}/seed*/student",
        "read": "consistency",
        "field": field,
        "unit": unit,
        "lower_is_better": field == "stage_minutes_max",
        "command": command,
    }


def stage_wall_minutes(stage: Path) -> float:
    """Training wall minutes (config.json to results.json) plus the robustness evaluation's own `time_s`
    (it may have run later, as `semireg robustness` on a finished run)."""
    robustness = json.loads((stage / "robustness.json").read_text())["time_s"]
    return wall_minutes(stage) + robustness / 60


def consistency_value(student: Path, field: str) -> float:
    teacher = student.parent / "teacher"
    if field == "stage_minutes_max":
        return max(stage_wall_minutes(teacher), stage_wall_minutes(student))
    if field == "student_val_accuracy":
        return 100 * final_metric(student, "val.accuracy")
    if field == "student_minus_teacher_clean":
        return 100 * (final_metric(student, "test.accuracy") - final_metric(teacher, "test.accuracy"))
    c15 = [json.loads((run / "robustness.json").read_text())["summary"]["mean_c15"] for run in (student, teacher)]
    return 100 * (c15[0] - c15[1])


DISENTANGLE_BEST = (
    "jha-strong-adversary"  # the variant whose figures are the headline (docs/results.md shows every variant)
)
# Its runs at 30 adversary steps a round are the headline (the rule written before seeds 1 and 2 ran: docs/results.md);
# those at 10, the variant until 2026-12-05, keep their figures under mnist-disentangle.adv10.*.
DISENTANGLE_ADV10 = DISENTANGLE.format(variant=DISENTANGLE_BEST) + " (at 089e734, method.adv_steps = 10 then)"


def disentangle_figures(prefix: str, root: str, command: str) -> dict[str, dict]:
    """Every headline metric of the disentangle variant's runs under `root`, keyed `prefix + name`."""
    percent = (
        ("z_probe_mlp_sampled", "z_probe_mlp_sampled", True),
        ("z_probe_mlp_mean", "z_probe_mlp", True),
        ("z_probe_linear_mean", "z_probe_linear", True),
        ("s_probe_mlp", "s_probe_mlp", False),
        ("swap_accuracy", "swap_accuracy", False),
        ("clf_s_accuracy", "clf_s_accuracy", False),
        ("z_probe_linear_sampled", "z_probe_linear_sampled", True),
    )
    plain = (("z_std", False), ("recon_bce_other_z", False), ("recon_bce", True))  # z_std: the collapse guard
    at = {"root": root, "command": command}
    return {
        **{
            prefix + key: system_figure("mnist-disentangle", DISENTANGLE_BEST, metric, 100, lower_is_better=low, **at)
            for key, metric, low in percent
        },
        **{
            prefix + key: system_figure("mnist-disentangle", DISENTANGLE_BEST, key, lower_is_better=low, unit="", **at)
            for key, low in plain
        },
    }


FP32 = "precision=32-true channels_last=false"
FIGURES: dict[str, dict] = {
    "mnist-100-vat.1000-steps.fp32.test_accuracy": equal_steps("mnist-100-vat", "vat", "fp32", FP32),
    "mnist-100-vat.1000-steps.auto.test_accuracy": equal_steps("mnist-100-vat", "vat", "auto", ""),
    "mnist-100-vat.1000-steps.auto-bf16-probe-xi0.3.test_accuracy": equal_steps(
        "mnist-100-vat", "vat", "auto-bf16-probe-xi0.3", "method.probe=autocast method.xi=0.3"
    ),
    "mnist-100-vat.1000-steps.auto-fp32-probe-xi0.1.test_accuracy": equal_steps(
        "mnist-100-vat", "vat", "auto-fp32-probe-xi0.1", "method.probe=fp32 method.xi=0.1"
    ),
    "mnist-100-fixmatch.1000-steps.fp32.test_accuracy": equal_steps("mnist-100-fixmatch", "", "fp32", FP32),
    "mnist-100-fixmatch.1000-steps.auto.test_accuracy": equal_steps("mnist-100-fixmatch", "", "auto", ""),
    "mnist-100-vat.time_to_macro_f1_0.97": time_to(0.97),
    "mnist-100-vat.time_to_macro_f1_0.98": time_to(0.98),
    "speed.bf16-over-fp32.wrn28_2": speedup("wrn28_2"),
    "speed.bf16-over-fp32.cnn_seed001": speedup("cnn_seed001"),
    "speed.bf16-over-fp32.cnn_small": speedup("cnn_small"),
    "speed.bf16-over-fp32.preact_resnet18": speedup("preact_resnet18"),
    "speed.bf16-over-fp32.vat_step": speedup("vat_step"),
    "speed.bf16-over-fp32.fixmatch_step_wrn28_2": speedup("fixmatch_step"),
    "speed.bf16-over-fp32.consistency_student_step": speedup("consistency_student_step"),
    "speed.decode.photos": {
        "json": "benchmarks/results/decode-speed.json",
        "path": ["photos-400x300-to-128px", "ratio_semireg_over_plain"],
        "unit": "x",
        "command": "SEMIREG_DATA=../shared/data python benchmarks/speed/decode.py   # nothing else running",
    },
    "speed.decode.cifar10-jpeg": {
        "json": "benchmarks/results/decode-speed.json",
        "path": ["cifar10-jpeg.tar.gz", "ratio_semireg_over_plain"],
        "unit": "x",
        "command": "SEMIREG_DATA=../shared/data python benchmarks/speed/decode.py   # nothing else running",
    },
    "speed.label-spreading-100k": {
        "json": "benchmarks/results/label-spreading-speed.json",
        "path": ["ratio_sklearn_over_semireg"],
        "unit": "x",
        "command": "python benchmarks/speed/label_spreading.py   # 100,000 x 64, nothing else running",
    },
    **{
        f"select.{ds}.{field}": select_figure(ds, field)
        for ds in ("digits", "cancer", "mnist-100")
        for field in (
            "recommended_test_accuracy",
            "labels_only_test_accuracy",
            "gain_over_labels_only",
            "search_wall_s",
        )
    },
    "mnist-began/classes_covered": system_figure("mnist-began", "public", "classes_covered", unit="classes"),
    "mnist-began/max_class_share": system_figure("mnist-began", "public", "max_class_share", 100, lower_is_better=True),
    "mnist-began/kl_uniform": system_figure("mnist-began", "public", "kl_uniform", lower_is_better=True, unit="nats"),
    "mnist-began/m_global_end": system_figure("mnist-began", "public", "m_global_end", lower_is_better=True, unit=""),
    "mnist-began/m_global_start": system_figure(
        "mnist-began", "public", "m_global_start", lower_is_better=True, unit=""
    ),
    "mnist-began/frechet": system_figure("mnist-began", "public", "frechet", lower_is_better=True, unit=""),
    "mnist-began/frechet_real": system_figure("mnist-began", "public", "frechet_real", lower_is_better=True, unit=""),
    "mnist-began/train_minutes": system_figure(
        "mnist-began", "public", "train_time_s", 1 / 60, lower_is_better=True, unit="min"
    ),
    **disentangle_figures("mnist-disentangle/", "runs/issue17/adv30", DISENTANGLE_ADV30),
    **disentangle_figures("mnist-disentangle.adv10.", "runs/issue17", DISENTANGLE_ADV10),
    "mnist-100/vat/test_accuracy": mnist100_figure(MNIST100_VAT_RUNS, MNIST100_VAT),
    "mnist-100/vat/worst_seed": mnist100_figure(MNIST100_VAT_RUNS, MNIST100_VAT, worst=True),
    **pi_mnist_figures("vat", wall=True),
    # The `vat` variant before its probe replayed the clean pass's noise: 6,000 steps, fp32 probe.
    "mnist-100-pi.vat-6k.test_accuracy": mnist100_figure(
        "runs/pi-mnist-6k/mnist-100-pi/vat/seed*",
        PI_MNIST.format(variant="vat").replace("runs/pi-mnist ", "runs/pi-mnist-6k ")
        + " (at commit 55fa2bd, the variant before same_noise: 6,000 steps)",
    ),
    **pi_mnist_figures("labels-only"),
    **pi_mnist_figures("vat-entmin", wall=True),
    # The `vat-entmin` variant before: 15,000 steps, fp32 probe, the last weights evaluated (no EMA).
    "mnist-100-pi.vat-entmin-15k.test_accuracy": mnist100_figure(
        "runs/pi-mnist-15k/mnist-100-pi/vat-entmin/seed*",
        PI_MNIST.format(variant="vat-entmin").replace("runs/pi-mnist ", "runs/pi-mnist-15k ")
        + " (at commit cc10771, the variant before: 15,000 steps, fp32 probe, no EMA)",
    ),
    # The `vat-entmin` variant before: 20,000 steps, the noise drawn afresh at every pass (no bank).
    **{
        f"mnist-100-pi.vat-entmin-20k.{name}": {
            **figure,
            "runs": "runs/pi-mnist-20k/mnist-100-pi/vat-entmin/seed*",
            "command": PI_MNIST.format(variant="vat-entmin").replace("runs/pi-mnist ", "runs/pi-mnist-20k ")
            + " (at commit 6069fb0, the variant before: 20,000 steps, fresh noise at every pass)",
        }
        for name, figure in zip(
            ("test_accuracy", "wall_minutes"), pi_mnist_figures("vat-entmin", wall=True).values(), strict=True
        )
    },
    "mnist-100-vat.before.test_accuracy": mnist100_figure(
        "runs/issue18/base/mnist-100-vat/vat/seed*",
        "semireg train mnist-100-vat --variant vat --seeds 1 train.progress=false --runs-root runs/issue18/base"
        "   # at commit fd727a7, the recipe before balance and n_val",
    ),
    "mnist-100-vat.before-with-val.val_accuracy": mnist100_figure(
        "runs/issue18/before-val/mnist-100-vat/vat/seed*",
        "semireg train mnist-100-vat --variant vat --seeds 1 method.balance=0.0 train.progress=false "
        "--runs-root runs/issue18/before-val   # the selection run: today's recipe without the balance term",
        metric="val.accuracy",
    ),
    "mnist-100/vat/validation_accuracy": mnist100_figure(MNIST100_VAT_RUNS, MNIST100_VAT, metric="val.accuracy"),
    "mnist-100-vat-entmin.cnn_seed001.test_accuracy": mnist100_figure(
        "runs/issue18/mnist-cnn001/mnist-100-vat-entmin/seed*", MNIST100_VAT_ENTMIN_CNN001
    ),
    **{
        f"cifar10-4000-cpu/{m}/{field}": cifar_cpu_figure(m, field)
        for m in CIFAR_CPU_METHODS
        for field in ("test_accuracy", "wall_minutes")
    },
    **{
        f"cifar10-4000-cpu.fp32-epyc.{m}.{field}": cifar_cpu_figure(m, field, CIFAR_CPU_TABLE_EPYC)
        for m in ("supervised", "fixmatch", "freematch", "pseudolabel")
        for field in ("test_accuracy", "wall_minutes")
    },
    **{
        f"cifar10-4000-cpu.5000-steps.{m}.{field}": cifar_cpu_long_figure(m, field)
        for m in ("supervised", "fixmatch")
        for field in ("test_accuracy", "train_minutes")
    },
    **{
        f"cifar10-4000-cpu.amx-15000-steps.{m}.{field}": cifar_cpu_long_figure(
            m, field, "runs/issue18/cifar-amx/long", CIFAR_CPU_AMX
        )
        for m in ("supervised", "fixmatch")
        for field in ("test_accuracy", "train_minutes")
    },
    **{
        f"mnist-100/{m}/{field}": mnist100_table_figure(m, worst=field == "worst_seed")
        for m in MNIST100_TABLE
        for field in ("test_accuracy", "worst_seed")
    },
    **{f"cifar10-consistency-cpu/{field}": consistency_figure(field) for field in CONSISTENCY_FIELDS},
    **{
        f"cifar10-consistency-cpu.amx.{tag}.{field}": consistency_figure(field, tag)
        for tag in CONSISTENCY_AMX
        for field in CONSISTENCY_FIELDS
    },
}


def final_metric(run: Path, metric: str) -> float:
    value = json.loads((run / "results.json").read_text())
    for part in metric.split("."):
        value = value[part]
    return float(value)


def wall_minutes(run: Path) -> float:
    """Minutes from the run's config.json (written once its data are loaded) to its results.json."""
    return ((run / "results.json").stat().st_mtime - (run / "config.json").stat().st_mtime) / 60


def time_to_target(run: Path, metric: str, target: float) -> float:
    """Training seconds (the eval record's `time`) until the test split first reaches the target;
    inf where it never does (the run counts, as its worst case)."""
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "eval" and rec.get("split", "test") == "test" and rec.get(metric, -1.0) >= target:
            return float(rec["time"])
    return float("inf")


VECTORS = (
    "python benchmarks/reproduce/vectors.py --methods all   "
    "# 5 random splits per task, defaults (2 threads, precision auto), nothing else running"
)
VECTOR_CANDIDATES = (
    "logreg_labels_only",
    "labelspreading_knn5",
    "labelspreading_knn7",
    "labelspreading_knn10",
    "selftraining_logreg",
    "semireg_default",
    "semireg_labelspreading",
    "semireg_selftraining",
)
# every semireg method at its defaults (SemiSupervisedClassifier(method=M)), for the "no method far under
# labels only" check; the classical ones are in VECTOR_CANDIDATES
VECTOR_METHODS = (
    "supervised",
    "fixmatch",
    "flexmatch",
    "freematch",
    "meanteacher",
    "pimodel",
    "pseudolabel",
    "uda",
    "vat",
)
# The comparison's tasks; iris is held out (no default was chosen on it or looked at with it).
VECTOR_TASKS = ("digits", "wine", "cancer", "iris")
FIGURES.update(
    {
        f"vectors/{task}/{name}/{field}": {
            "json": "benchmarks/results/vectors.json",
            "path": [task, name, field],
            "unit": "%" if field == "accuracy" else "s",
            "command": VECTORS,
        }
        for task in VECTOR_TASKS
        for name in VECTOR_CANDIDATES
        for field in ("accuracy", "seconds")
    }
)
FIGURES.update(
    {
        f"vectors/{task}/semireg_{method}/accuracy": {
            "json": "benchmarks/results/vectors.json",
            "path": [task, f"semireg_{method}", "accuracy"],
            "unit": "%",
            "command": VECTORS,
        }
        for task in VECTOR_TASKS
        for method in VECTOR_METHODS
    }
)


GRID_COMMAND = (
    "bash benchmarks/reproduce/mnist-vat-grid.sh   # semireg train mnist-vat-grid --seeds 0,1,2 train.progress=false "
    "--runs-root runs/grid; defaults (2 threads, precision auto), one run at a time"
)
FIGURES.update(
    {
        f"mnist-vat-grid/{variant}/test_accuracy": {
            "runs": f"runs/grid/mnist-vat-grid/{variant}/seed*",
            "read": "final",
            "metric": "test.accuracy",
            "scale": 100,
            "unit": "%",
            "command": GRID_COMMAND,
        }
        for variant in ("plain", "dropout", "vat", "dropout+vat")
    }
)


def values_of(spec: dict) -> tuple[list[float], list[str]]:
    if "json" in spec:
        path = ROOT / spec["json"]
        if not path.exists():
            return [], []
        value = json.loads(path.read_text())
        for part in spec["path"]:
            value = value[part]
        if isinstance(value, list):  # one value per split or seed
            return [float(v) for v in value], [spec["json"]]
        return [float(value)], [spec["json"]]
    if spec.get("read") == "select":
        paths = sorted(Path(p) for p in glob.glob(str(ROOT / spec["selection"])))
        found = [(p, json.loads(p.read_text())) for p in paths]
        found = [(p, s) for p, s in found if s.get("fitted")]  # finished searches, with their --fit runs
        return [select_value(s, spec["field"]) for _, s in found], [str(p.relative_to(ROOT)) for p, _ in found]
    patterns = spec["runs"] if isinstance(spec["runs"], list) else [spec["runs"]]
    runs = sorted(
        Path(p) for pattern in patterns for p in glob.glob(str(ROOT / pattern)) if (Path(p) / "results.json").exists()
    )
    if spec["read"] == "final":
        values = [final_metric(r, spec["metric"]) * spec.get("scale", 1) for r in runs]
    elif spec["read"] == "consistency":
        runs = [
            r for r in runs if (r / "robustness.json").exists() and (r.parent / "teacher" / "robustness.json").exists()
        ]
        values = [consistency_value(r, spec["field"]) for r in runs]
    elif spec["read"] == "wall":
        values = [wall_minutes(r) for r in runs]
    else:
        values = [time_to_target(r, spec["metric"], spec["target"]) for r in runs]
    return values, [str(r.relative_to(ROOT)) for r in runs]


def summarise(values: list[float], spec: dict, sources: list[str]) -> dict:
    """mean, std (over the seeds), n, the worst seed. A time to a target that a seed never reached
    is that seed's worst case: the figure then has no mean ("reached" says how many did)."""
    # a search's wall time, a leakage, a distance: the worst is the largest
    higher_is_better = spec.get("unit") not in ("s",) and not spec.get("lower_is_better")
    finite = [v for v in values if math.isfinite(v)]
    complete = len(finite) == len(values)
    out = {
        "mean": statistics.fmean(values) if complete else None,
        "std": (statistics.stdev(values) if len(values) > 1 else 0.0) if complete else None,
        "n": len(values),
        "reached": len(finite),
        "worst": (min(values) if higher_is_better else max(values)) if complete else None,
        "values": [v if math.isfinite(v) else None for v in values],
        "unit": spec.get("unit", ""),
        "command": spec["command"],
        "sources": sources,
        "date": datetime.date.today().isoformat(),
    }
    if spec.get("reduce") == "worst" and complete:
        # The figure is the worst seed itself (std 0 by definition); `values` keeps every seed.
        out.update(mean=out["worst"], std=0.0)
    if spec.get("read") == "time_to":
        out["target"] = f"{spec['metric']} >= {spec['target']}"
    return out


# Where each figure's runs ran: (key prefix, CPU kind, precision the runs used); the longest matching prefix wins.
# A figure with no entry here ran where this script runs (the kind read from /proc/cpuinfo, precision auto).
EPYC_FP32 = ("fp32-only (2-core AMD EPYC, no AVX-512)", "32-true")
AVX512_BF16 = ("AVX-512 BF16, no AMX (2-core)", "bf16-mixed")
AMX = ("AMX (2-core Intel Xeon)", "bf16-mixed")
MACHINES = [
    ("mnist-100/", *EPYC_FP32),
    *[(f"mnist-100/{m}/", *AMX) for m in ("fixmatch", "flexmatch", "freematch", "uda")],
    ("mnist-100-vat.", *EPYC_FP32),
    ("mnist-100-vat.1000-steps.", *AVX512_BF16),
    ("mnist-100-vat.1000-steps.fp32", AVX512_BF16[0], "32-true"),
    ("mnist-100-vat.time_to", *AVX512_BF16),
    ("mnist-100-fixmatch.1000-steps.", *AVX512_BF16),
    ("mnist-100-fixmatch.1000-steps.fp32", AVX512_BF16[0], "32-true"),
    ("mnist-100-vat-entmin.", *EPYC_FP32),
    ("cifar10-4000-cpu/", *AMX),
    ("cifar10-4000-cpu.amx-15000-steps", *AMX),
    ("cifar10-4000-cpu.fp32-epyc", *EPYC_FP32),
    ("cifar10-4000-cpu.5000-steps", *EPYC_FP32),
    ("cifar10-consistency-cpu/", *AMX),
    ("cifar10-consistency-cpu.amx", *AMX),
    ("cifar10-consistency-cpu.fp32-epyc", *EPYC_FP32),
    ("mnist-began/", *EPYC_FP32),
    ("mnist-disentangle", *EPYC_FP32),
    ("select.", *AVX512_BF16),
    ("speed.", AVX512_BF16[0], "bf16-mixed against 32-true"),
    ("speed.decode.", AMX[0], "uint8 pixels (no arithmetic)"),
    ("speed.label-spreading", AMX[0], "float32 (semireg), float64 (scikit-learn)"),
    ("vectors/", AMX[0], "bf16-mixed (semireg; scikit-learn in float64)"),
]


def this_machine() -> tuple[str, str]:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "amx_bf16" in flags:
        return AMX
    if "avx512_bf16" in flags:
        return AVX512_BF16
    return ("fp32-only (no AVX-512)", "32-true")


def machine_of(key: str) -> dict[str, str]:
    """{"cpu": ..., "precision": ...} of the machine a figure's runs ran on (see MACHINES)."""
    best = max((m for m in MACHINES if key.startswith(m[0])), key=lambda m: len(m[0]), default=None)
    cpu, precision = best[1:] if best else this_machine()
    return {"cpu": cpu, "precision": precision}


def mnist100_best(figures: dict) -> None:
    """mnist-100/best/*: the MNIST-100 method (table or the vat recipe) with the highest mean over >= 5 seeds;
    its entries are copies of that method's, with `method` naming it."""
    keys = [
        k
        for k in figures
        if k.startswith("mnist-100/") and k.endswith("/test_accuracy") and not k.startswith("mnist-100/best/")
    ]
    key = best_of(figures, keys)
    if key is None:
        return
    method = key.split("/")[1]
    for field in ("test_accuracy", "worst_seed"):
        figures[f"mnist-100/best/{field}"] = {**figures[f"mnist-100/{method}/{field}"], "method": method}
    print(f"mnist-100/best: {method}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prefixes", nargs="*", help="only the figures whose key starts with one of these")
    args = ap.parse_args()
    figures = json.loads(OUT.read_text()) if OUT.exists() else {}
    for key, spec in FIGURES.items():
        if args.prefixes and not any(key.startswith(p) for p in args.prefixes):
            continue
        values, sources = values_of(spec)
        if not values:
            print(f"{key}: no inputs yet ({spec.get('runs') or spec.get('json')})", file=sys.stderr)
            continue
        figures[key] = {**summarise(values, spec, sources), **machine_of(key)}
        f = figures[key]
        if f["mean"] is None:
            print(f"{key}: reached by {f['reached']} of {f['n']} seeds ({f['values']})")
        else:
            print(f"{key}: {f['mean']:.4g} ± {f['std']:.2g} {f['unit']} (n={f['n']}, worst {f['worst']:.4g})")
    mnist100_best(figures)
    for key, entry in figures.items():
        if "cpu" not in entry:
            entry.update(machine_of(key))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
