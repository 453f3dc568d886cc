"""`semireg` command line: train, eval, robustness, compare, report, predict, export, recipes, demo."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from . import rundir
from .augment import eval_transform
from .config import (
    RunConfig,
    config_for,
    fill_short_keys,
    kind_entry,
    load_recipe,
    merge,
    method_named,
    parse_override,
    parse_recipe,
    recipe_names,
    resolve,
)
from .data import Split
from .distributed import env_rank
from .engine import train
from .errors import ConfigError, DataError, SemiregError
from .evaluation import classification_metrics, predict_logits
from .export import export_run, predict_files
from .finished import load_finished_model
from .phase_loop import evaluate_finished_system
from .report.browser import check_page
from .report.compare import DEFAULT_METRICS, compare
from .report.html import build_comparison, build_report
from .robustness import run_robustness
from .runs import check_same_data
from .selection import fitted_lines, parse_budget, select_runs
from .traindata import data_from_config


def _overrides(items: list[str], args: argparse.Namespace) -> dict[str, Any]:
    out = dict(parse_override(item) for item in items)
    if getattr(args, "data_dir", None):
        out["data.data_dir"] = args.data_dir
    if getattr(args, "download", False):
        out["data.download"] = True
    if getattr(args, "unlabeled", None):
        out["data.unlabeled"] = args.unlabeled
    return out


def _run_dir_for(root: Path, recipe: str, variant: str, seed: int, n_seeds: int, stage: str = "") -> Path:
    path = root / recipe
    if variant:
        path = path / variant
    path = path / f"seed{seed}" if n_seeds > 1 or variant else path
    return path / stage if stage else path


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.json").exists():
            raise ConfigError(f"{run_dir}: no config.json; not a semireg run directory")
        # argparse reads the first `key=value` after --resume as the (optional) recipe.
        items = ([args.recipe] if args.recipe else []) + list(args.overrides)
        if args.recipe and "=" not in args.recipe:
            raise ConfigError(f"--resume continues {run_dir}'s own config; drop the recipe '{args.recipe}'")
        cfg = _resume_config(rundir.read_config(run_dir), _overrides(items, args))
        result = train(cfg, run_dir, resume=True, split=None, data=_data_for_run(cfg, run_dir, "resume"))
        if env_rank() == 0:
            _print_table([(cfg.name, cfg.train.seed, result.metrics)])
        return 0
    if not args.recipe:
        raise ConfigError("train needs a RECIPE (see `semireg recipes`), key=value overrides, or --resume RUN_DIR")
    items = list(args.overrides)
    if "=" in args.recipe:  # no recipe, only overrides: the code defaults are the base (`train data.dataset=csv:x.csv`)
        items.insert(0, args.recipe)
        recipe = parse_recipe({}, "run")
    else:
        recipe = load_recipe(args.recipe)
    overrides = _overrides(items, args)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else recipe.seeds
    variants = _select(args.variant, [v for v, _ in recipe.variants], "variant", recipe.name)
    stage_names = [s for s, _ in recipe.stages]
    stages = _select(getattr(args, "stage", None), stage_names, "stage", recipe.name)
    root = Path(args.runs_root)
    single = args.run_dir and len(variants) * len(seeds) == 1
    plan = []
    for v in variants:
        for seed in seeds:
            base = Path(args.run_dir) if single else None
            dirs = {
                st: (base / st if st else base) if base else _run_dir_for(root, recipe.name, v, seed, len(seeds), st)
                for st in stage_names
            }
            teacher_dirs = {st: str(d.resolve()) for st, d in dirs.items()}
            for st in stages:
                plan.append((v, seed, st, config_for(recipe, v, seed, overrides, st, teacher_dirs), dirs[st]))
    main = env_rank() == 0  # under torchrun every rank runs this command; rank 0 alone checks and prints
    if not args.overwrite and main:  # refuse before anything runs, so nothing is half-done
        for *_, d in plan:
            if d.exists() and (d / "config.json").exists():
                raise ConfigError(f"{d} already exists; pass --overwrite to replace it or --resume {d} to continue it")
    rows = []
    for variant, seed, stage, cfg, run_dir in plan:
        if main:
            print(f"== {cfg.name} seed={seed} -> {run_dir}", file=sys.stderr)
        result = train(cfg, run_dir, overwrite=args.overwrite)
        metrics = dict(result.metrics)
        if not main:
            continue
        if cfg.robustness.after_train:
            metrics["robustness"] = run_robustness(run_dir, cfg=cfg, model=result.model)["summary"]
        rows.append(("/".join(p for p in (variant, stage) if p) or cfg.name, seed, metrics))
    if not main:
        return 0
    table = _print_table(rows)
    if len(plan) > 1:
        summary_dir = root / recipe.name if not single else Path(args.run_dir)
        summary_dir.mkdir(parents=True, exist_ok=True)
        (summary_dir / "summary.md").write_text(table + "\n")
        rundir.write_json(summary_dir / "summary.json", [{"variant": v, "seed": s, **_row(m)} for v, s, m in rows])
    return 0


# What may change when a run is resumed: how it runs, never what it computes.
RESUME_KEYS = {
    "train.devices",
    "train.num_nodes",
    "train.threads",
    "train.progress",
    "train.compile",
    "train.channels_last",
    "data.data_dir",
    "logger",
}


def _resume_config(saved: dict[str, Any], overrides: dict[str, Any]) -> RunConfig:
    flat = {}
    for key, value in fill_short_keys(overrides, method_named(saved)).items():
        for sub, v in value.items() if isinstance(value, dict) else [("", value)]:
            flat[f"{key}.{sub}" if sub else key] = v
    refused = sorted(set(flat) - RESUME_KEYS)
    if refused:
        raise ConfigError(
            f"--resume continues the saved config; only {', '.join(sorted(RESUME_KEYS))} may change "
            f"(not {', '.join(refused)})"
        )
    return resolve(merge(saved, flat))


def _select(chosen: list[str] | None, known: list[str], what: str, recipe: str) -> list[str]:
    if not chosen:
        return known
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise ConfigError(
            f"unknown {what}(s) {', '.join(unknown)} of {recipe} (known: {', '.join(k for k in known if k) or 'none'})"
        )
    return [k for k in known if k in chosen]


def _data_for_run(cfg: RunConfig, run_dir: Path, what: str):
    """Rebuild the run's data from its config (exactly the images it trained on), refused when its
    saved split or its data fingerprint differs: `what` (resume, eval, report) never reads other data."""

    data, split = data_from_config(cfg)
    saved = run_dir / "split.npz"
    if saved.exists():
        stored = Split.load(saved)
        if not (len(stored.labeled) == len(split.labeled) and (stored.labeled == split.labeled).all()):
            raise ConfigError(f"{run_dir}: the data no longer matches the saved split")
    check_same_data(run_dir, data.fingerprint(), what)
    return data


def _row(metrics: dict[str, Any]) -> dict[str, Any]:
    test = metrics.get("test", {})
    row = {
        "accuracy": test.get("accuracy"),
        "macro_f1": test.get("macro_f1"),
        "train_time_s": metrics.get("train_time_s"),
        "time_per_epoch_s": metrics.get("time_per_epoch_s"),
        "steps": metrics.get("steps"),
    }
    row.update(metrics.get("headline", {}))  # multi-network systems
    rob = metrics.get("robustness")
    if rob:
        row.update({k: rob.get(k) for k in ("mean_c15", "mean_c19_s5", "clean")})
    return row


def _print_headline_table(rows: list[tuple[str, int, dict[str, Any]]]) -> str:
    """Multi-network systems: their own headline metrics, one column each."""
    keys = list(dict.fromkeys(k for _, _, m in rows for k in m.get("headline", {})))
    fmt = lambda v: "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = ["| run | seed | " + " | ".join(keys) + " | train time (s) |", "|---|---|" + "---|" * (len(keys) + 1)]
    for name, seed, m in rows:
        cells = [fmt(m.get("headline", {}).get(k)) for k in keys]
        lines.append(f"| {name} | {seed} | " + " | ".join(cells) + f" | {fmt(m.get('train_time_s'))} |")
    table = "\n".join(lines)
    print(table)
    return table


def _print_table(rows: list[tuple[str, int, dict[str, Any]]]) -> str:
    if any("headline" in m for _, _, m in rows):
        return _print_headline_table(rows)
    robust = any("mean_c15" in _row(m) for _, _, m in rows)
    head = "| variant | seed | test accuracy | macro-F1 | train time (s) | s/epoch |"
    lines = [
        head + (" corrupted 15x5 | 19 @ sev 5 |" if robust else ""),
        "|---|---|---|---|---|---|" + ("---|---|" if robust else ""),
    ]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"
    for variant, seed, m in rows:
        r = _row(m)
        line = f"| {variant} | {seed} | {fmt(r['accuracy'])} | {fmt(r['macro_f1'])} | {r['train_time_s']:.1f} | {r['time_per_epoch_s']} |"
        if robust:
            line += f" {fmt(r.get('mean_c15'))} | {fmt(r.get('mean_c19_s5'))} |"
        lines.append(line)
    groups: dict[str, list[dict[str, Any]]] = {}
    for variant, _, m in rows:
        groups.setdefault(variant, []).append(_row(m))
    if any(len(g) > 1 for g in groups.values()):
        lines += [
            "",
            "| variant | runs | test accuracy (mean ± std) | macro-F1 (mean ± std) | train time (s, mean) |",
            "|---|---|---|---|---|",
        ]
        for variant, g in groups.items():
            acc, f1 = [r["accuracy"] for r in g], [r["macro_f1"] for r in g]
            sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
            lines.append(
                f"| {variant} | {len(g)} | {statistics.mean(acc):.4f} ± {sd(acc):.4f} | "
                f"{statistics.mean(f1):.4f} ± {sd(f1):.4f} | {statistics.mean(r['train_time_s'] for r in g):.1f} |"
            )
    table = "\n".join(lines)
    print(table)
    return table


def cmd_eval(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    cfg = resolve(rundir.read_config(run_dir))
    data = _data_for_run(cfg, run_dir, "eval")
    with rundir.writer_lock(run_dir):  # eval.json (and a system's pictures) go into the run directory
        return _evaluate_run(run_dir, cfg, data)


def _evaluate_run(run_dir: Path, cfg: RunConfig, data) -> int:
    if not kind_entry(cfg.method["name"]).classifier:  # a system evaluates its own networks
        out = evaluate_finished_system(run_dir, data)
        rundir.write_json(run_dir / "eval.json", out)
        print(json.dumps({k: v for k, v in out.items() if not isinstance(v, list)}, indent=1))
        return 0
    model, kind, step = load_finished_model(run_dir, data)
    out = {}
    for split, (x, y) in data.eval_sets.items():
        pred = predict_logits(model, x, transform=eval_transform(cfg.augment)).argmax(1).numpy()
        m = classification_metrics(y.numpy(), pred, data.num_classes)
        out[split] = m
        print(f"{split}: accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  (step {step}, {kind} weights)")
    rundir.write_json(run_dir / "eval.json", {"step": step, **out})
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    rows = []
    for run_dir in args.run_dirs:
        corruptions = args.corruptions.split(",") if args.corruptions else None
        severities = [int(s) for s in args.severities.split(",")] if args.severities else None
        print(f"== {run_dir}", file=sys.stderr)
        result = run_robustness(
            Path(run_dir),
            released_dir=args.released_dir,
            n_images=args.n_images,
            corruptions=corruptions,
            severities=severities,
            progress=True,
        )
        rows.append((run_dir, result))
    lines = [
        "| run | images | clean | mean 15x5 (mCE) | rel. | mean 19 @ sev 5 | rel. |",
        "|---|---|---|---|---|---|---|",
    ]
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}"
    for run_dir, result in rows:
        s = result["summary"]
        mce = "" if s["mce_c15"] is None else f" ({100 * s['mce_c15']:.2f})"
        lines.append(
            f"| {run_dir} | {result['n_images']} | {pct(s['clean'])} | {pct(s['mean_c15'])}{mce} | "
            f"{pct(s['mean_c15_relative'])} | {pct(s['mean_c19_s5'])} | {pct(s['mean_c19_s5_relative'])} |"
        )
    print("\n".join(lines))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    metrics = tuple(args.metric) if args.metric else DEFAULT_METRICS
    out = Path(args.out) if args.out else None
    print(compare([Path(r) for r in args.run_dirs], metrics, out))
    if out is not None:
        print(f"\n{out / 'compare.md'}, {out / 'compare.json'}, {out / 'compare.png'}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    runs = [Path(r) for r in args.run_dirs]
    if len(runs) == 1 and args.out is None:
        run_dir = runs[0]
        try:
            data = _data_for_run(resolve(rundir.read_config(run_dir)), run_dir, "report")
        except DataError as exc:  # the report is still worth having, without its sample grids
            print(f"semireg: data not available ({exc}); the report has no sample grids", file=sys.stderr)
            data = None
        with rundir.writer_lock(run_dir):
            page = build_report(run_dir, data)
    else:
        metrics = tuple(args.metric) if args.metric else None
        page = build_comparison(runs, Path(args.out or "compare.html"), metrics)
    print(page)
    if args.check:
        check = check_page(page)
        print(f"chromium: {len(check.images)} images, {len(check.broken_images)} broken, {len(check.errors)} errors")
        for err in check.errors:
            print(f"  {err}")
        return 0 if check.ok else 1
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    rows = predict_files(Path(args.source), args.files, top=args.top)
    if args.out:
        out = Path(args.out)
        if out.suffix == ".csv":
            lines = ["file,index,class,name,probability"] + [
                f"{r['file']},{r['index']},{r['class']},{r['name']},{r['probability']:.6f}" for r in rows
            ]
            out.write_text("\n".join(lines) + "\n")
        else:
            rundir.write_json(out, rows)
    for r in rows:
        others = "  ".join(f"{t['name']} {t['probability']:.3f}" for t in r["top"][1:])
        print(f"{r['file']}[{r['index']}]\t{r['name']}\t{r['probability']:.4f}" + (f"\t({others})" if others else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    print(export_run(Path(args.run_dir), Path(args.out) if args.out else None))
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    for name in recipe_names():
        recipe = load_recipe(name)
        variants = ", ".join(v for v, _ in recipe.variants if v)
        extra = f"  [variants: {variants}]" if variants else ""
        print(f"{name:24s} {recipe.description}{extra}")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    items = list(args.overrides)
    if args.recipe and "=" in args.recipe:
        items.insert(0, args.recipe)
        recipe = parse_recipe({}, "select")
    else:
        recipe = load_recipe(args.recipe or "demo")
    cfg = config_for(recipe, recipe.variants[0][0], args.seed, _overrides(items, args))
    data, _ = data_from_config(cfg)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    sel = select_runs(
        cfg.to_dict(),
        data,
        methods=methods,
        folds=args.folds,
        budget_s=parse_budget(args.budget),
        out=Path(args.out),
        fit=args.fit,
        seed=args.seed,
        progress=True,
    )
    print(sel.table)
    print(f"\nrecommended: {sel.recommended} ({sel.verdict})")
    for line in fitted_lines(sel):
        print(line)
    print(f"\n{sel.out / 'compare.html'}, {sel.out / 'selection.json'}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Offline demo on scikit-learn's digits: a few labels alone vs the same labels + VAT."""
    args.recipe = "demo"
    args.seeds = None
    args.variant = None
    args.run_dir = None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.runs_root = str(Path(args.runs_root) / f"demo-{stamp}")
    args.overwrite = False
    args.resume = None
    start = time.perf_counter()
    cmd_train(args)
    print(f"\nrun directories and plots: {args.runs_root}/demo  ({time.perf_counter() - start:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semireg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_training_commands(sub)
    add_reading_commands(sub)
    return parser


def add_training_commands(sub) -> None:
    """`train` and `select`: the commands that train."""
    p = sub.add_parser("train", help="train a recipe (all its variants and seeds) or resume a run")
    p.add_argument("recipe", nargs="?", help="recipe name (see `semireg recipes`) or path to a .toml file")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=500 method.eps=2.0")
    p.add_argument("--runs-root", default="runs", help="where run directories are created (default: runs)")
    p.add_argument("--run-dir", help="run directory (single variant and seed only)")
    p.add_argument("--variant", action="append", help="run only this variant (repeatable)")
    p.add_argument("--stage", action="append", help="run only this stage of a staged recipe (repeatable)")
    p.add_argument("--seeds", help="comma-separated seeds, replacing the recipe's")
    p.add_argument("--overwrite", action="store_true", help="replace existing run directories")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint")
    p.add_argument("--data-dir", help="where data files are looked up first")
    p.add_argument("--download", action="store_true", help="download MNIST from the canonical mirrors if missing")
    p.add_argument(
        "--unlabeled", metavar="DIR", help="a folder (or .npz) of unlabelled inputs added to the unlabelled set"
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "select",
        help="which method on this data? labels-only and the methods on k folds of the labels, within a time budget",
    )
    p.add_argument(
        "recipe", nargs="?", help="a recipe, or key=value overrides on the defaults (data.dataset=csv:x.csv)"
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides (the model, training options, ...)")
    p.add_argument("--budget", default="10m", help="wall time of the whole search: 300, 90s, 10m, 1h (default 10m)")
    p.add_argument("--folds", type=int, default=3, help="folds of the labelled set (default 3)")
    p.add_argument(
        "--methods", help="comma-separated candidates (default: labels-only and every method without a teacher)"
    )
    p.add_argument(
        "--out",
        default="runs/select",
        help="where the runs, the comparison page and selection.json go (default: runs/select/<data>-<hash of the data>, one directory per data set)",
    )
    p.add_argument("--fit", action="store_true", help="then train the recommended method and labels-only on all labels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="where data files are looked up first")
    p.add_argument(
        "--unlabeled", metavar="DIR", help="a folder (or .npz) of unlabelled inputs added to the unlabelled set"
    )
    p.set_defaults(func=cmd_select)


def add_reading_commands(sub) -> None:
    """The commands that read runs (eval, robustness, compare, report, predict, export) and the rest."""
    p = sub.add_parser("eval", help="evaluate a run directory's checkpoint on its test split")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("robustness", help="accuracy of finished runs under the CIFAR-10-C corruptions")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--released-dir", help="directory of the released CIFAR-10-C .npy files (instead of generating)")
    p.add_argument(
        "--n-images", type=int, help="corrupt only this many test images (default: the run's robustness.n_images)"
    )
    p.add_argument("--corruptions", help="comma-separated subset (default: all 19)")
    p.add_argument("--severities", help="comma-separated subset of 1..5")
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser("compare", help="table (and chart) of finished runs, mean ± std over seeds")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument(
        "--metric",
        action="append",
        help="dotted path into results.json (repeatable; default: test.accuracy, test.macro_f1, train_time_s)",
    )
    p.add_argument("--out", help="also write compare.md, compare.json and compare.png (chart of the first metric) here")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="(re)build a run's report.html; several runs: one comparison page")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", help="where the comparison page goes (default: compare.html here)")
    p.add_argument("--metric", action="append", help="dotted path into results.json for the comparison (repeatable)")
    p.add_argument(
        "--check", action="store_true", help="open the page in headless Chromium; fail on errors or broken images"
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "predict", help="predict classes of image files, .npz arrays or CSV rows with a run (or an export)"
    )
    p.add_argument("source", metavar="RUN_DIR", help="a run directory, or a .safetensors file from `semireg export`")
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="images (PNG, JPEG, ...), .npz arrays, or .csv rows (runs trained on a CSV)",
    )
    p.add_argument("--top", type=int, default=1, help="also list the next most likely classes")
    p.add_argument("--out", help="write the predictions to a .csv or .json file")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="the run's evaluated weights as safetensors (no pickle), with their config")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", help="file to write (default: RUN_DIR/model.safetensors)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("recipes", help="list the bundled recipes, one line each")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("demo", help="offline demo on digits (labels alone vs labels + VAT), under 2 minutes")
    p.add_argument("--runs-root", default="runs")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    p.set_defaults(func=cmd_demo)


def main(argv: list[str] | None = None) -> int:
    rundir.code_version()  # pin the code version now, before any long run starts
    parser = build_parser()
    # Overrides may come before or after options (`train R --seeds 0 a=1`); argparse leaves the
    # ones after options unparsed, so they are collected here.
    args, extra = parser.parse_known_args(argv)
    stray = [x for x in extra if x.startswith("-") or "=" not in x or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    try:
        return args.func(args)
    except SemiregError as exc:
        print(f"semireg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("semireg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
