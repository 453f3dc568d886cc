"""Compare finished runs: one row per configuration, mean ± std over the runs that differ only by
seed (and by settings that cannot change a result: threads, progress bars, data directory).

    semireg compare RUN_DIR... [--metric test.accuracy] [--out DIR]

Metrics are dotted paths into each run's results.json.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunDirError
from ..evaluation import pyplot, read_jsonl

DEFAULT_METRICS = ("test.accuracy", "test.macro_f1", "train_time_s")
# Settings that do not change what a run computes, so runs differing in them are one configuration.
_NOT_PART_OF_A_RESULT = (
    ("train", "seed"),
    ("train", "threads"),
    ("train", "progress"),
    ("data", "data_dir"),
    ("data", "download"),
    ("train", "log_every"),
)


@dataclass
class Group:
    label: str
    config_hash: str
    runs: list[Path] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

    def mean_std(self, metric: str) -> tuple[float, float]:
        v = self.values[metric]
        return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def _read(run: Path, name: str) -> dict[str, Any]:
    path = run / name
    if not path.exists():
        raise RunDirError(f"{run}: no {name} (not a finished semireg run)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc})") from None


def metric_value(results: dict[str, Any], dotted: str, run: Path) -> float:
    node: Any = results
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise RunDirError(f"{run}: results.json has no '{dotted}'")
        node = node[part]
    if not isinstance(node, (int, float)) or isinstance(node, bool):
        raise RunDirError(f"{run}: '{dotted}' is not a number ({node!r})")
    return float(node)


def config_key(config: dict[str, Any]) -> str:
    """A hash of everything in a resolved config that can change a result."""
    cfg = json.loads(json.dumps(config))
    for section, key in _NOT_PART_OF_A_RESULT:
        cfg.get(section, {}).pop(key, None)
    cfg.pop("logger", None)
    cfg.pop("description", None)  # free text: a recipe whose description was reworded is the same configuration
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]


def group_runs(run_dirs: list[Path], metrics: tuple[str, ...] = DEFAULT_METRICS) -> list[Group]:
    groups: dict[str, Group] = {}
    for run in run_dirs:
        config, results = _read(run, "config.json"), _read(run, "results.json")
        key = config_key(config)
        group = groups.setdefault(key, Group(label=config.get("name", run.name), config_hash=key))
        group.runs.append(run)
        group.seeds.append(int(config.get("train", {}).get("seed", 0)))
        for m in metrics:
            group.values.setdefault(m, []).append(metric_value(results, m, run))
    name_by_differences(
        list(groups.values()), {g.config_hash: _read(g.runs[0], "config.json") for g in groups.values()}
    )
    return list(groups.values())


def flat_result_keys(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of everything in a config that can change a result."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_result_keys(value, dotted + "."))
        elif tuple(dotted.split(".")) not in _NOT_PART_OF_A_RESULT and dotted not in ("logger", "name", "description"):
            out[dotted] = value
    return out


def name_by_differences(groups: list[Group], configs: dict[str, dict[str, Any]], most: int = 3) -> None:
    """Configurations sharing a name are named by the keys in which they differ from each other
    (`mnist-100-vat/vat (method.eps=4.0)`), not by a hash a reader cannot decode; the hash stays
    only where no key differs (configs that differ in a key hidden from this view)."""
    by_label: dict[str, list[Group]] = {}
    for g in groups:
        by_label.setdefault(g.label, []).append(g)
    for same in by_label.values():
        if len(same) < 2:
            continue
        flat = {g.config_hash: flat_result_keys(configs[g.config_hash]) for g in same}
        keys = sorted({k for f in flat.values() for k in f})
        differing = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat.values()}) > 1]
        for g in same:
            shown = [f"{k}={json.dumps(flat[g.config_hash].get(k))}" for k in differing[:most]]
            more = f", +{len(differing) - most} more" if len(differing) > most else ""
            g.label = f"{g.label} ({', '.join(shown)}{more})" if shown else f"{g.label} [{g.config_hash}]"


def format_value(metric: str, mean: float, std: float, n: int) -> str:
    scale, unit = (100.0, "") if metric.endswith("accuracy") else (1.0, "")
    digits = 2 if metric.endswith("accuracy") else (0 if metric.endswith("_s") else 4)
    text = f"{scale * mean:.{digits}f}{unit}"
    return f"{text} ± {scale * std:.{digits}f}" if n > 1 else text


def markdown_table(groups: list[Group], metrics: tuple[str, ...]) -> str:
    head = ["configuration", "runs (seeds)"] + [m + (" (%)" if m.endswith("accuracy") else "") for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [g.label, f"{len(g.runs)} ({', '.join(map(str, sorted(g.seeds)))})"]
        cells += [format_value(m, *g.mean_std(m), len(g.runs)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_comparison(groups: list[Group], metric: str, path: Path) -> None:
    plt = pyplot()
    scale = 100.0 if metric.endswith("accuracy") else 1.0
    means = [scale * g.mean_std(metric)[0] for g in groups]
    stds = [scale * g.mean_std(metric)[1] for g in groups]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) + 2), 4.0))
    bars = ax.bar(range(len(groups)), means, yerr=stds, capsize=4, color="tab:blue", alpha=0.8)
    for bar, g, m in zip(bars, groups, means):
        ax.annotate(
            f"{m:.2f}\n(n={len(g.runs)})",
            (bar.get_x() + bar.get_width() / 2, m),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.set_xticks(range(len(groups)), [g.label for g in groups], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(metric + (" (%)" if scale == 100.0 else ""))
    low = min(m - s for m, s in zip(means, stds))
    ax.set_ylim(max(0.0, low - 0.1 * abs(max(means) - low) - 1.0), None)
    ax.set_title("mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_eval_curves(groups: list[Group], path: Any) -> int:
    """Test accuracy against step and against training time (evaluations excluded: the eval
    records' `time`), one line per run, one colour per configuration. Returns the number of runs
    drawn (a run without eval records has no line)."""
    plt = pyplot()
    drawn = 0
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, g in enumerate(groups):
        for j, run in enumerate(g.runs):
            records = [
                r
                for r in read_jsonl(run / "metrics.jsonl")
                if r.get("kind") == "eval" and r.get("split", "test") == "test" and "accuracy" in r
            ]
            drawn += bool(records)
            for ax, x_key in zip(axes, ("step", "time")):
                pts = [(r[x_key], r["accuracy"]) for r in records if x_key in r]
                if pts:
                    ax.plot(
                        *zip(*pts),
                        color=colours[i % len(colours)],
                        alpha=0.8,
                        marker="o",
                        ms=2,
                        label=g.label if j == 0 else None,
                    )
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("training time (s)")
    axes[0].set_ylabel("test accuracy")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return drawn


def compare(run_dirs: list[Path], metrics: tuple[str, ...] = DEFAULT_METRICS, out_dir: Path | None = None) -> str:
    """The comparison table (markdown); with out_dir, also compare.md, compare.json, compare.png (mean ±
    std) and curves.png (test accuracy against step and against training time, one line per run) there."""
    groups = group_runs(run_dirs, metrics)
    table = markdown_table(groups, metrics)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "compare.md").write_text(table + "\n")
        (out_dir / "compare.json").write_text(
            json.dumps(
                [
                    {
                        "configuration": g.label,
                        "config_hash": g.config_hash,
                        "runs": [str(r) for r in g.runs],
                        "seeds": g.seeds,
                        **{
                            m: {"mean": g.mean_std(m)[0], "std": g.mean_std(m)[1], "values": g.values[m]}
                            for m in metrics
                        },
                    }
                    for g in groups
                ],
                indent=2,
            )
        )
        plot_comparison(groups, metrics[0], out_dir / "compare.png")
        plot_eval_curves(groups, out_dir / "curves.png")
    return table
