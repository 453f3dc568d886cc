"""report.html: what a person reads after a run, in one self-contained file (images inlined as
data URIs, no script, no external resource), readable offline and safe to mail or archive.

    build_report(run_dir, data)         one run: config, code version, data and split, metrics,
                                        curves, confusion, per-class F1, sample grids, the
                                        method's own pictures (every other PNG in the run)
    build_comparison(run_dirs, out)     several runs: mean ± std per configuration, every run's
                                        final figures and eval curves, links to their reports

Everything is read from the run directory (config.json, meta.json, results.json, metrics.jsonl,
split.npz, *.png); `data` (the run's TrainData) is only needed for the sample grids.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..augment import AugmentConfig, Augmenter
from ..config import KINDS, kind_of
from ..data import Split
from ..data.arrays import pixels_to_float
from ..errors import RunDirError
from ..evaluation import plot_confusion, plot_curves, read_jsonl
from .compare import DEFAULT_METRICS, group_runs, plot_comparison, plot_eval_curves
from .compare import format_value as fmt_metric

REPORT = "report.html"
# Pictures the report draws itself, or shows in their own section.
_OWN_PICTURES = {"curves.png", "confusion.png"}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1100px;
padding:1em 2em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;
font-variant-numeric:tabular-nums}th{background:#f4f4f4}.num{text-align:right}
.muted{color:#777}.bar{background:#4a7fc1;height:.8em;display:inline-block;vertical-align:middle}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}figcaption{font-size:.85em;color:#555}
img{max-width:100%;image-rendering:pixelated}pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.85em}
.warn{background:#fff4e0;border-left:4px solid #e0a030;padding:.4em .8em}
"""


# ----------------------------------------------------------------------------- small pieces


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str, caption: str = "", width: int | None = None) -> str:
    style = f' style="width:{width}px"' if width else ""
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{_png_uri(png)}" alt="{_esc(alt)}"{style}>{cap}</figure>'


def _table(head: list[str], rows: list[list[Any]], numeric_from: int | None = 1) -> str:
    """An HTML table; columns from `numeric_from` on are right-aligned (None: none are)."""
    out = ["<table><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        cells = [
            f"<td{' class=num' if numeric_from is not None and i >= numeric_from else ''}>{c if isinstance(c, _Raw) else _esc(_fmt(c))}</td>"
            for i, c in enumerate(row)
        ]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return str(v)


def _figure_png(draw) -> bytes:
    """PNG bytes of what `draw(path_like)` saves (the plotting helpers take a path or a file)."""
    buf = io.BytesIO()
    draw(buf)
    return buf.getvalue()


def image_grid(x: torch.Tensor, cols: int, scale: int) -> bytes:
    """PNG of a grid of images. x: (N, C, H, W) in [0, 1], C in {1, 3}; upscaled `scale`x, nearest."""
    n, c, h, w = x.shape
    rows = max(1, -(-n // cols))
    pad = 1
    canvas = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), dtype=np.float32)
    imgs = pixels_to_float(x.detach()).float().clamp(0, 1).cpu().numpy().transpose(0, 2, 3, 1)  # (N, H, W, C)
    if c == 1:
        imgs = np.repeat(imgs, 3, axis=3)
    for i, img in enumerate(imgs[:, :, :, :3]):
        r, col = divmod(i, cols)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = img

    image = Image.fromarray((canvas * 255).round().astype(np.uint8))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc})") from None


# ----------------------------------------------------------------------------- sections


def _header(
    run_dir: Path,
    config: dict[str, Any],
    meta: dict[str, Any],
    results: dict[str, Any] | None,
    records: list[dict[str, Any]],
) -> str:
    name = config.get("name") or run_dir.name
    steps = [r["step"] for r in records if "step" in r]
    status = (
        "finished"
        if results is not None
        else f"<span class=warn>not finished: last logged step {max(steps) if steps else 0} of "
        f"{_esc(meta.get('total_steps', '?'))}</span>"
    )
    return (
        f"<h1>{_esc(name)}</h1><p>{_esc(config.get('description', ''))}</p>"
        f"<p>run directory <code>{_esc(run_dir)}</code> · method <b>{_esc(config.get('method', {}).get('name', '?'))}</b>"
        f" · model <b>{_esc(config.get('model', {}).get('name', '?'))}</b> · seed {_esc(meta.get('seed', '?'))}"
        f" · status: {status}</p>"
    )


def _provenance(meta: dict[str, Any]) -> str:
    code = meta.get("code", {})
    rows = [[k, v] for k, v in code.items()]
    rows += [[f"hardware.{k}", v] for k, v in meta.get("hardware", {}).items()]
    rows += [
        [k, meta[k]]
        for k in ("device", "precision", "world_size", "evaluated_weights", "teacher", "init_from")
        if k in meta
    ]
    # What "auto" resolved to, and why (hardware.Choice as meta.json holds it).
    rows += [
        [f"{k} (chosen)", f"{c['value']} (asked: {c['requested']}; {c['reason']})"]
        for k, c in meta.get("speed", {}).items()
    ]
    dirty = " <span class=warn>uncommitted changes in the code</span>" if code.get("git_dirty") else ""
    return "<h2>Code version and hardware</h2>" + dirty + _table(["what", "value"], rows, numeric_from=None)


def _data_section(meta: dict[str, Any], run_dir: Path, data) -> str:
    d = meta.get("data", {})
    rows = [[k, v] for k, v in d.items()]
    split_path = run_dir / "split.npz"
    if split_path.exists():
        s = Split.load(split_path).summary()
        rows += [[f"split.{k}", "official test set" if k == "test_held_out" and v < 0 else v] for k, v in s.items()]
    rows += [["unlabelled batch size", meta.get("unlabeled_batch_size")], ["total steps", meta.get("total_steps")]]
    out = "<h2>Data and split</h2>" + _table(["what", "value"], rows, numeric_from=None)
    if data is not None and getattr(data, "y_l", None) is not None and len(data.y_l):
        counts = torch.bincount(data.y_l, minlength=data.num_classes).tolist()
        names = data.class_names or [str(i) for i in range(data.num_classes)]
        out += "<p>labelled images per class</p>" + _table(["class"] + names, [["labelled"] + counts])
    return out


def _metrics_section(results: dict[str, Any] | None, run_dir: Path) -> str:
    if results is None:
        return "<h2>Final metrics</h2><p class=muted>no results.json: the run has not finished.</p>"
    eval_rows = [
        [name, m.get("accuracy"), m.get("macro_f1"), m.get("loss")]
        for name, m in results.items()
        if isinstance(m, dict) and "accuracy" in m
    ]
    out = "<h2>Final metrics</h2>"
    if eval_rows:
        out += _table(["split", "accuracy", "macro-F1", "loss"], eval_rows)
    headline = [k for k, v in results.get("headline", {}).items() if not isinstance(v, (dict, list))]
    # A system's headline metrics first, in bold; the rest after (each once).
    scalars = [[_Raw(f"<b>{_esc(k)}</b>"), results.get("headline", {})[k]] for k in headline]
    scalars += [[k, v] for k, v in results.items() if not isinstance(v, (dict, list)) and k not in headline]
    out += _table(["what", "value"], scalars)
    robust = _read_json(run_dir / "robustness.json")
    if robust and "summary" in robust:
        out += f"<p>robustness ({_esc(robust.get('n_images'))} test images, {_esc(robust.get('source'))})</p>" + _table(
            ["what", "accuracy"], [[k, v] for k, v in robust["summary"].items()]
        )
    return out


def _curves_section(run_dir: Path, config: dict[str, Any]) -> str:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return ""
    saved = run_dir / "curves.png"
    name = config.get("method", {}).get("name", "")
    caption = KINDS[kind_of(name)].curves if any(name in k.registry for k in KINDS.values()) else ""
    if _fresh(saved, path):  # drawn from these very records at the end of the run (per phase for a system)
        png = saved.read_bytes()
    else:
        png = _figure_png(lambda buf: plot_curves(path, buf))
    return "<h2>Loss and accuracy curves</h2>" + _img(png, "training curves", caption)


def _fresh(picture: Path, source: Path) -> bool:
    """A picture the run drew is reused when it is not older than the file it was drawn from."""
    return picture.exists() and source.exists() and picture.stat().st_mtime_ns >= source.stat().st_mtime_ns


def _per_class_section(results: dict[str, Any] | None, class_names: list[str] | None, run_dir: Path) -> str:
    test = (results or {}).get("test")
    if not isinstance(test, dict) or "confusion" not in test:
        return ""
    k = len(test["confusion"])
    names = class_names or [str(i) for i in range(k)]
    saved = run_dir / "confusion.png"
    png = (
        saved.read_bytes()
        if _fresh(saved, run_dir / "results.json")
        else _figure_png(
            lambda buf: plot_confusion(
                test["confusion"], buf, names, title=f"test confusion (accuracy {test['accuracy']:.4f})"
            )
        )
    )
    pc = test["per_class"]
    rows = [
        [
            names[i],
            pc["precision"][i],
            pc["recall"][i],
            pc["f1"][i],
            _Raw(f'<span class=bar style="width:{120 * pc["f1"][i]:.0f}px"></span>'),
            pc["support"][i],
        ]
        for i in range(k)
    ]
    return (
        "<h2>Confusion matrix and per-class F1 (test)</h2>"
        + _img(png, "confusion matrix")
        + _table(["class", "precision", "recall", "F1", "", "support"], rows)
    )


def _samples_section(data, config: dict[str, Any]) -> str:
    if data is None:
        return "<h2>Samples</h2><p class=muted>data not available when the report was built.</p>"
    if data.x_l.ndim != 4 or data.x_l.shape[1] not in (1, 3):
        return ""

    h = data.x_l.shape[-1]
    scale = max(1, round(48 / h))  # digits 6x, MNIST and CIFAR 2x
    out = ["<h2>Samples</h2>"]
    gen = torch.Generator().manual_seed(0)
    if data.y_l is not None and len(data.y_l):
        per_class = 8
        rows = []
        for c in range(data.num_classes):
            idx = (data.y_l == c).nonzero().flatten()[:per_class]
            picked = data.x_l[idx]
            if len(picked) < per_class:  # keep one row per class
                picked = torch.cat([picked, torch.ones(per_class - len(picked), *picked.shape[1:])])
            rows.append(picked)
        out.append(
            _img(
                image_grid(torch.cat(rows), per_class, scale),
                "labelled images",
                f"labelled images: one row per class (up to {per_class} each; blank = fewer)",
            )
        )
    if data.x_u is not None and len(data.x_u):
        idx = torch.randperm(len(data.x_u), generator=gen)[:32]
        out.append(
            _img(image_grid(data.x_u[idx], 8, scale), "unlabelled images", "unlabelled images, 32 drawn at random")
        )
    aug = AugmentConfig(**config.get("augment", {}))
    augmenter = Augmenter(aug, seed=0)  # its own generator: nothing the run drew changes
    x = pixels_to_float(data.x_l[:8])
    views = [x, augmenter.weak(x), augmenter.strong(augmenter.weak(x)), augmenter.strong(augmenter.weak(x))]
    out.append(
        _img(
            image_grid(torch.cat(views), len(x), scale),
            "augmented views",
            "rows: original, weak view (the run's flip/pad/crop), two strong views (RandAugment "
            f"{aug.ra_ops} ops, magnitude {aug.ra_magnitude}) as FixMatch, UDA and consistency draw them",
        )
    )
    return "".join(out)


def _method_pictures(run_dir: Path) -> str:
    pngs = sorted(p for p in run_dir.glob("*.png") if p.name not in _OWN_PICTURES)
    if not pngs:
        return ""
    return "<h2>The method's pictures</h2>" + "".join(_img(p.read_bytes(), p.stem, p.name) for p in pngs)


def _config_section(config: dict[str, Any]) -> str:
    return "<h2>Resolved configuration</h2><pre>" + _esc(json.dumps(config, indent=2)) + "</pre>"


def _page(title: str, body: str) -> str:
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style></head><body>{body}"
        f"<p class=muted>written by semireg {stamp}</p></body></html>\n"
    )


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- public


def build_report(run_dir: str | Path, data=None) -> Path:
    """Write run_dir/report.html from what the run directory holds; `data` adds the sample grids."""
    run_dir = Path(run_dir)
    config = _read_json(run_dir / "config.json")
    if config is None:
        raise RunDirError(f"{run_dir}: no config.json; not a semireg run directory")
    meta = _read_json(run_dir / "meta.json") or {}
    results = _read_json(run_dir / "results.json")
    records = read_jsonl(run_dir / "metrics.jsonl")
    # meta.json records the class names, so a report rebuilt without the data still names them
    class_names = getattr(data, "class_names", None) or meta.get("data", {}).get("class_names")
    body = "".join(
        [
            _header(run_dir, config, meta, results, records),
            _metrics_section(results, run_dir),
            _curves_section(run_dir, config),
            _per_class_section(results, class_names, run_dir),
            _samples_section(data, config),
            _method_pictures(run_dir),
            _data_section(meta, run_dir, data),
            _provenance(meta),
            _config_section(config),
        ]
    )
    return _write(run_dir / REPORT, _page(f"semireg: {config.get('name', run_dir.name)}", body))


def build_comparison(run_dirs: list[Path], out: Path, metrics: tuple[str, ...] | None = None) -> Path:
    """One page for several finished runs: mean ± std per configuration and every run's curves."""

    if not metrics:  # a system's runs have no test accuracy: compare them on their headline metrics
        first = _read_json(Path(run_dirs[0]) / "results.json") or {}
        headline = first.get("headline") if "test" not in first else None
        metrics = (
            tuple(f"headline.{k}" for k, v in headline.items() if isinstance(v, (int, float))) if headline else None
        )
    metrics = tuple(metrics or DEFAULT_METRICS)
    groups = group_runs(run_dirs, metrics)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        [g.label, f"{len(g.runs)} ({', '.join(map(str, sorted(g.seeds)))})"]
        + [fmt_metric(m, *g.mean_std(m), len(g.runs)) for m in metrics]
        for g in groups
    ]
    head = ["configuration", "runs (seeds)"] + [m + (" (%)" if m.endswith("accuracy") else "") for m in metrics]
    chart = _figure_png(lambda buf: plot_comparison(groups, metrics[0], buf))
    run_rows = []
    for g in groups:
        for i, (run, seed) in enumerate(zip(g.runs, g.seeds)):
            link = Path(os.path.relpath(run / REPORT, out.parent.resolve())).as_posix()
            name = _Raw(f'<a href="{_esc(link)}">{_esc(run)}</a>' if (run / REPORT).exists() else _esc(run))
            run_rows.append([name, g.label, seed] + [g.values[m][i] for m in metrics])
    body = (
        f"<h1>semireg: {len(run_dirs)} runs compared</h1>"
        "<h2>Mean ± std over seeds</h2>"
        + _table(head, rows, numeric_from=2)
        + _img(chart, "comparison chart", f"{metrics[0]}: mean ± std over seeds")
        + _img(
            _figure_png(lambda buf: plot_eval_curves(groups, buf)),
            "evaluation curves",
            "test accuracy against step and against training time, one line per run",
        )
        + "<h2>Every run</h2>"
        + _table(["run", "configuration", "seed", *metrics], run_rows, numeric_from=2)
    )
    return _write(out, _page("semireg: comparison", body))
