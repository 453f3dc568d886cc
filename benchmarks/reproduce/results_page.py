"""docs/results.md and README.md's headline table, written from benchmarks/results/figures.json.

    python benchmarks/reproduce/results_page.py           # write both
    python benchmarks/reproduce/results_page.py --check   # exit 1 when either differs from what would be written

Every number on the page is a figures.json entry (mean ± std over seeds, the worst seed, n, the CPU
kind and precision its runs used, and the command that made them); nothing is typed here but the
table layout and each protocol's one-paragraph description.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))  # figures.py: the entries' names
from figures import VECTOR_METHODS, VECTOR_TASKS

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "benchmarks" / "results" / "figures.json"
PAGE = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
HEADLINE_BEGIN, HEADLINE_END = (
    "<!-- headline table: benchmarks/reproduce/results_page.py -->",
    "<!-- end of headline table -->",
)

MNIST_METHODS = [
    "supervised",
    "pimodel",
    "meanteacher",
    "pseudolabel",
    "vat",
    "vat-entmin",
    "fixmatch",
    "flexmatch",
    "freematch",
    "uda",
]
LABELS = {
    "supervised": "labels only",
    "pimodel": "Pi-model",
    "meanteacher": "Mean Teacher",
    "pseudolabel": "pseudo-label",
    "vat": "VAT",
    "vat-entmin": "VAT + entropy min. + balance",
    "fixmatch": "FixMatch",
    "flexmatch": "FlexMatch",
    "freematch": "FreeMatch",
    "uda": "UDA",
}
GRID = ["plain", "dropout", "vat", "dropout+vat"]
GRID_POST = {"plain": 98.72, "dropout": 98.45, "vat": 98.94, "dropout+vat": 98.91}

VECTOR_ROWS = [
    ("logistic regression, labels only", "logreg_labels_only"),
    ("LabelSpreading kNN-5", "labelspreading_knn5"),
    ("LabelSpreading kNN-7", "labelspreading_knn7"),
    ("LabelSpreading kNN-10", "labelspreading_knn10"),
    ("SelfTraining(LogisticRegression)", "selftraining_logreg"),
    ('SemiSupervisedClassifier() (method="auto")', "semireg_default"),
    ("semireg label spreading (torch, kNN-10)", "semireg_labelspreading"),
    ("semireg self-training (torch logistic regression)", "semireg_selftraining"),
]


class Grid(NamedTuple):
    """Figures laid out as rows x columns; a row is (label, figures.json key with a {column} field)."""

    rows: list[tuple[str, str]]
    columns: tuple[str, ...]

    def keys(self) -> list[str]:
        return [template.format(column=c) for _, template in self.rows for c in self.columns]


# (title, description, [(row label, figures.json key)] or a Grid of them)
PROTOCOLS = [
    (
        "MNIST, 100 labels (`mnist-100-<method>`)",
        "100 labelled training images (10 per class), the other 59,900 unlabelled, the official 10,000 test images; "
        "every method on the same network and budget, 5 seeds each, test accuracy (%).",
        [(LABELS[m], f"mnist-100/{m}/test_accuracy") for m in MNIST_METHODS],
    ),
    (
        "CIFAR-10, 4,000 labels at a CPU budget (`cifar10-4000-cpu-<method>`)",
        "4,000 labelled images, 2,500 steps of a small CNN (at most an hour on 2 cores), test accuracy (%); "
        "labels only, FixMatch and the best method over 3 seeds, the others 1.",
        [(LABELS[m], f"cifar10-4000-cpu/{m}/test_accuracy") for m in MNIST_METHODS if m != "vat-entmin"],
    ),
    (
        "Consistency training on CIFAR-10-C (`cifar10-consistency-cpu`, variant `finetune-swa`)",
        "A teacher trained on clean images, a student trained on RandAugment views to match it; both judged on "
        "the 15 CIFAR-10-C corruptions at 5 severities. Points are the student minus its teacher.",
        [
            ("student − teacher, corrupted (15 × 5)", "cifar10-consistency-cpu/student_minus_teacher_c15x5"),
            ("student − teacher, clean test", "cifar10-consistency-cpu/student_minus_teacher_clean"),
            ("student, validation accuracy", "cifar10-consistency-cpu/student_val_accuracy"),
            ("minutes of the longest stage", "cifar10-consistency-cpu/stage_minutes_max"),
        ],
    ),
    (
        "BEGAN with k as loss state (`mnist-began`, variant `public`)",
        "BEGAN on MNIST, k updated while training; sample quality by a judge network trained on real digits.",
        [
            ("classes covered by 1,000 samples", "mnist-began/classes_covered"),
            ("largest class share of samples", "mnist-began/max_class_share"),
            ("KL(sample classes ‖ uniform)", "mnist-began/kl_uniform"),
            ("Fréchet distance (judge features)", "mnist-began/frechet"),
            ("Fréchet distance, real against real", "mnist-began/frechet_real"),
            ("convergence measure M at the end", "mnist-began/m_global_end"),
            ("training minutes", "mnist-began/train_minutes"),
        ],
    ),
    (
        "Adversarially disentangled autoencoder (`mnist-disentangle`, variant `jha-strong-adversary`)",
        "Label information in s, the rest in z: probes read the label from each code (lower is better for z).",
        [
            ("classifier on s", "mnist-disentangle/clf_s_accuracy"),
            ("MLP probe on s", "mnist-disentangle/s_probe_mlp"),
            ("swap accuracy (class of dec(z_i, s_j))", "mnist-disentangle/swap_accuracy"),
            ("MLP probe on sampled z", "mnist-disentangle/z_probe_mlp_sampled"),
            ("MLP probe on mean z", "mnist-disentangle/z_probe_mlp_mean"),
            ("linear probe on mean z", "mnist-disentangle/z_probe_linear_mean"),
            ("reconstruction BCE, own z", "mnist-disentangle/recon_bce"),
            ("reconstruction BCE, another image's z", "mnist-disentangle/recon_bce_other_z"),
        ],
    ),
    (
        "Dropout × VAT as a supervised regulariser (`mnist-vat-grid`)",
        "All 60,000 MNIST labels, the post's network; the post's single runs: "
        + ", ".join(f"{v} {GRID_POST[v]}" for v in GRID)
        + " (%).",
        [(v, f"mnist-vat-grid/{v}/test_accuracy") for v in GRID],
    ),
    (
        "Permutation-invariant MNIST, 100 labels (`mnist-100-pi`)",
        "The VAT paper's MLP on flattened images (784-1200-600-300-150-150-10, Gaussian noise of spread 0.5 on every "
        "hidden layer while training), no augmentation, VAT at the authors' eps 5 on the unlabelled batch over "
        "20,000 steps (the authors' 50,000 with the same twelve decays of the rate), its power iteration replaying "
        "the clean pass's noise (`method.same_noise`); before that option, 6,000 steps; VAT with entropy "
        "minimisation (weight 0.3) over 27,000 steps, without `same_noise`, an EMA of the weights (0.999) evaluated, "
        "the noise added from a bank drawn once (`model.noise_bank`, 1.15-1.19x faster a step, docs/performance.md); before, 20,000 "
        "steps with noise drawn at every pass (on an AMX host whose steps were ~20 % faster than the 27,000-step "
        "batch's: minutes compare only within a row's batch), and 15,000 steps with the last weights. Test accuracy "
        "(%) and minutes a run (training and evaluations). The paper's VAT figure is 98.64 %.",
        [
            ("labels only", "mnist-100-pi/labels-only/test_accuracy"),
            ("VAT, 20,000 steps, probe replaying the noise", "mnist-100-pi/vat/test_accuracy"),
            ("VAT, minutes a run", "mnist-100-pi/vat/wall_minutes"),
            ("VAT, 6,000 steps, fresh noise in the probe", "mnist-100-pi.vat-6k.test_accuracy"),
            ("VAT + entropy minimisation, 27,000 steps, EMA, noise bank", "mnist-100-pi/vat-entmin/test_accuracy"),
            ("VAT + entropy minimisation, minutes a run", "mnist-100-pi/vat-entmin/wall_minutes"),
            ("VAT + entropy minimisation, 20,000 steps, EMA, fresh noise", "mnist-100-pi.vat-entmin-20k.test_accuracy"),
            ("the same, minutes a run", "mnist-100-pi.vat-entmin-20k.wall_minutes"),
            ("VAT + entropy minimisation, 15,000 steps", "mnist-100-pi.vat-entmin-15k.test_accuracy"),
        ],
    ),
    (
        "Vectors with few labels: the estimator's defaults against scikit-learn",
        "Digits (50 labels), wine (12), breast cancer (30), iris (9; held out, but self-training's row selection was "
        "changed after its first result there, 75.6 %): 5 random splits each (30 % of the rows held out as the "
        "test set, every class labelled once at least), the same rows for every candidate, all behind a "
        "StandardScaler; test accuracy (%), and the fit time of `SemiSupervisedClassifier()` with no arguments.",
        Grid(
            [(label, f"vectors/{{column}}/{name}/accuracy") for label, name in VECTOR_ROWS]
            + [("SemiSupervisedClassifier() fit seconds", "vectors/{column}/semireg_default/seconds")],
            VECTOR_TASKS,
        ),
    ),
    (
        "Vectors: every neural method at its defaults",
        "`SemiSupervisedClassifier(method=M)` on the same splits (the MLP with LayerNorm, 500 steps, each "
        "method's own defaults on vectors: VAT's radius from the data's scale, the Pi-model's weight 0.1, "
        "FreeMatch's momentum 0.99, a strong view swapping half of a row's features with rows predicted as its class): test accuracy (%), labels only first.",
        Grid([(method, f"vectors/{{column}}/semireg_{method}/accuracy") for method in VECTOR_METHODS], VECTOR_TASKS),
    ),
    (
        "`semireg select` on data sets",
        "A budgeted search on folds of the labels, then the recommended method and labels only trained on all labels "
        "(`--fit`); test accuracy (%) of each and the search's wall time.",
        [
            (f"{name}: {what}", f"select.{name}.{field}")
            for name in ("digits", "cancer", "mnist-100")
            for what, field in (
                ("recommended", "recommended_test_accuracy"),
                ("labels only", "labels_only_test_accuracy"),
                ("search wall s", "search_wall_s"),
            )
        ],
    ),
    (
        "Speed: bf16-mixed against float32 (ratios, same run)",
        "Training steps per second with precision auto (bf16-mixed) over 32-true, interleaved rounds in one run.",
        [
            (name, f"speed.bf16-over-fp32.{name}")
            for name in (
                "cnn_small",
                "cnn_seed001",
                "wrn28_2",
                "preact_resnet18",
                "vat_step",
                "fixmatch_step_wrn28_2",
                "consistency_student_step",
            )
        ],
    ),
    (
        "Speed: data and classical methods (ratios, same run)",
        "Decoding a folder (semireg's decoder over a plain one-process Pillow loop, the same bytes): 2,000 "
        "400x300 JPEG photos brought to 128 px, and the 60,000 CIFAR-10 JPEG thumbnails; label spreading on "
        "100,000 rows x 64 features, k = 10: scikit-learn's seconds over semireg's (below 1: semireg is slower).",
        [
            ("decoding photos", "speed.decode.photos"),
            ("decoding CIFAR-10 thumbnails", "speed.decode.cifar10-jpeg"),
            ("label spreading, scikit-learn s / semireg s", "speed.label-spreading-100k"),
        ],
    ),
]
HEADLINE = [
    ("MNIST, 100 labels: labels only", "mnist-100/supervised/test_accuracy"),
    ("MNIST, 100 labels: best method (VAT + entropy min.)", "mnist-100/vat-entmin/test_accuracy"),
    ("MNIST, 100 labels: FixMatch", "mnist-100/fixmatch/test_accuracy"),
    ("Permutation-invariant MNIST (MLP), 100 labels: labels only", "mnist-100-pi/labels-only/test_accuracy"),
    ("Permutation-invariant MNIST (MLP), 100 labels: VAT", "mnist-100-pi/vat/test_accuracy"),
    ("Permutation-invariant MNIST (MLP), 100 labels: VAT + entropy min.", "mnist-100-pi/vat-entmin/test_accuracy"),
    ("CIFAR-10, 4,000 labels, CPU budget: labels only", "cifar10-4000-cpu/supervised/test_accuracy"),
    ("CIFAR-10, 4,000 labels, CPU budget: FreeMatch", "cifar10-4000-cpu/freematch/test_accuracy"),
    ("CIFAR-10-C: noisy student − teacher", "cifar10-consistency-cpu/student_minus_teacher_c15x5"),
    ("Disentangling: swap accuracy", "mnist-disentangle/swap_accuracy"),
]


def number(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.2f}" if abs(v) < 1000 else f"{v:.0f}"


def cell(entry: dict | None) -> list[str]:
    """[mean ± std unit, worst, n, machine, command] of a figure, or a row that says it is missing."""
    if entry is None:
        return ["not measured", "", "", "", ""]
    unit = f" {entry['unit']}" if entry.get("unit") else ""
    value = (
        f"{number(entry['mean'])} ± {number(entry['std'])}{unit}"
        if entry["n"] > 1
        else f"{number(entry['mean'])}{unit}"
    )
    if entry["mean"] is None:
        value = f"reached by {entry['reached']} of {entry['n']}"
    machine = f"{entry.get('cpu', 'not recorded')}, {entry.get('precision', '')}".rstrip(", ")
    command = entry["command"].replace("|", "\\|")
    return [value, number(entry["worst"]), str(entry["n"]), machine, f"`{command}`"]


def table(rows: list[tuple[str, str]], figures: dict) -> list[str]:
    out = ["| | mean ± std | worst | n | CPU, precision | command |", "|---|---|---|---|---|---|"]
    for label, key in rows:
        out.append("| " + " | ".join([label, *cell(figures.get(key))]) + " |")
    return out


def grid_table(grid: Grid, figures: dict) -> list[str]:
    """One cell per figure, "mean ± std (worst w)"; the figures' n, machine and command said once below."""
    out = ["| | " + " | ".join(grid.columns) + " |", "|---" * (len(grid.columns) + 1) + "|"]
    for label, template in grid.rows:
        cells = [cell(figures.get(template.format(column=c))) for c in grid.columns]
        out.append("| " + " | ".join([label, *(f"{v} (worst {w})" if w else v for v, w, *_ in cells)]) + " |")
    shared = sorted({tuple(cell(figures[k])[2:]) for k in grid.keys() if k in figures})
    return out + ["", *(f"n = {n} each; {machine}; {command}" for n, machine, command in shared)]


def shown_keys(rows: list[tuple[str, str]] | Grid) -> list[str]:
    return rows.keys() if isinstance(rows, Grid) else [key for _, key in rows]


def others(figures: dict) -> list[str]:
    shown = {key for _, _, rows in PROTOCOLS for key in shown_keys(rows)}
    rest = sorted(k for k in figures if k not in shown and not k.endswith("/worst_seed") and "/best/" not in k)
    out = ["| figure | mean ± std | worst | n | CPU, precision |", "|---|---|---|---|---|"]
    for key in rest:
        out.append("| " + " | ".join([f"`{key}`", *cell(figures[key])[:4]]) + " |")
    return out


def page(figures: dict) -> str:
    lines = [
        "# Results",
        "",
        "Written by `python benchmarks/reproduce/results_page.py` from `benchmarks/results/figures.json`, which "
        "`benchmarks/reproduce/figures.py` computes from run directories; do not edit by hand. Every figure is a "
        "distribution over seeds run with the defaults a user gets (2 threads, precision auto) unless its "
        "command says otherwise: mean ± std, the worst seed, n, and the CPU kind and precision it ran on. "
        "The scripts that run each protocol are in `benchmarks/reproduce/`.",
        "",
    ]
    for title, description, rows in PROTOCOLS:
        body = grid_table(rows, figures) if isinstance(rows, Grid) else table(rows, figures)
        lines += [f"## {title}", "", description, "", *body, ""]
    lines += [
        "## Further figures",
        "",
        "Variants and earlier machines behind the tables above (commands in figures.json).",
        "",
        *others(figures),
        "",
    ]
    return "\n".join(lines)


def headline(figures: dict) -> str:
    out = [HEADLINE_BEGIN, "| | mean ± std | worst | n | CPU, precision |", "|---|---|---|---|---|"]
    for label, key in HEADLINE:
        out.append("| " + " | ".join([label, *cell(figures.get(key))[:4]]) + " |")
    return "\n".join(out + [HEADLINE_END])


def readme_with(readme: str, figures: dict) -> str:
    start, end = readme.index(HEADLINE_BEGIN), readme.index(HEADLINE_END) + len(HEADLINE_END)
    return readme[:start] + headline(figures) + readme[end:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = ap.parse_args()
    figures = json.loads(FIGURES.read_text())
    wanted = {PAGE: page(figures), README: readme_with(README.read_text(), figures)}
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(
                f"{path.relative_to(ROOT)} differs from what benchmarks/reproduce/results_page.py writes",
                file=sys.stderr,
            )
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
    return 0


if __name__ == "__main__":
    sys.exit(main())
