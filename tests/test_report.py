"""report.html, the comparison page, predict and export."""

import base64
import io
import json
import os
import pickle
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from semireg.cli import main
from semireg.errors import ConfigError, DataError, RunDirError
from semireg.export import export_run, load_exported, predict_files
from semireg.report.browser import check_page, find_browser
from semireg.report.html import build_report

SECTIONS = (
    "Final metrics",
    "Loss and accuracy curves",
    "Confusion matrix and per-class F1",
    "Samples",
    "Data and split",
    "Code version and hardware",
    "Resolved configuration",
)


def _train(root, variant, steps=150):
    run = root / variant
    assert (
        main(
            [
                "train",
                "demo",
                "--variant",
                variant,
                "--seeds",
                "0",
                "--run-dir",
                str(run),
                f"train.steps={steps}",
                "train.eval_every=50",
                "train.progress=false",
            ]
        )
        == 0
    )
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return _train(root, "vat"), _train(root, "labels-only")


def _images(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', page)


def _browser_or_skip():
    if find_browser() is None:
        if os.environ.get("SEMIREG_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required here (SEMIREG_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("no Chromium on this machine")


def test_report_is_self_contained_and_complete(runs):
    run = runs[0]
    page = (run / "report.html").read_text()
    for section in SECTIONS:
        assert f"<h2>{section}" in page, section
    srcs = _images(page)
    assert len(srcs) >= 5  # curves, confusion, labelled, unlabelled, augmented
    for src in srcs:  # every picture inlined and decodable: the page needs nothing beside it
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert not re.search(r'(src|href)="(https?:|file:|//)', page)
    results = json.loads((run / "results.json").read_text())
    assert f"{results['test']['accuracy']:.4f}" in page
    meta = json.loads((run / "meta.json").read_text())
    assert meta["code"]["semireg"] in page and "demo/vat" in page


def test_report_rebuilds_and_marks_an_unfinished_run(runs, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(runs[0], copy)
    (copy / "results.json").unlink()
    (copy / "report.html").unlink()
    with open(copy / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 1')  # a torn last line, as a kill mid-append leaves
    assert main(["report", str(copy)]) == 0
    page = (copy / "report.html").read_text()
    assert "not finished" in page and "<h2>Samples" in page
    with pytest.raises(RunDirError, match="config.json"):
        build_report(tmp_path / "nothing")


def test_report_and_comparison_render_in_chromium(runs, tmp_path):
    _browser_or_skip()
    check = check_page(runs[0] / "report.html", screenshot=tmp_path / "shot.png")
    assert check.ok, (check.errors, check.broken_images)
    assert len(check.images) == len(_images((runs[0] / "report.html").read_text())) >= 5
    assert Image.open(tmp_path / "shot.png").size[0] == 1200
    out = tmp_path / "cmp" / "compare.html"
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(out), "--check"]) == 0
    page = out.read_text()
    assert "demo/vat" in page and "demo/labels-only" in page and page.count("report.html") == 2


def test_the_browser_check_catches_a_broken_page(tmp_path):
    """The check above could pass vacuously; here it must fail."""
    _browser_or_skip()
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><body><img src="data:image/png;base64,AAAA" alt="x"><img src="missing.png">'
        '<script>console.error("boom"); not_defined();</script></body></html>'
    )
    check = check_page(bad)
    assert not check.ok and len(check.broken_images) == 2
    assert any("boom" in e for e in check.errors) and any("exception" in e for e in check.errors)


def test_export_loads_without_pickle_and_matches_the_run(runs, tmp_path, monkeypatch):
    run = runs[0]
    path = export_run(run, tmp_path / "m.safetensors")
    from semireg.config import resolve
    from semireg.finished import load_finished_model
    from semireg.traindata import data_from_config

    data, _ = data_from_config(resolve(json.loads((run / "config.json").read_text())))
    reference, _, _ = load_finished_model(run, data)

    def no_pickle(*a, **k):
        raise AssertionError("pickle used while loading an export")

    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    model, info = load_exported(path)
    monkeypatch.undo()
    x = data.eval_sets["test"][0][:64]
    with torch.no_grad():
        assert torch.equal(model(x), reference.eval()(x))
    assert info["num_classes"] == 10 and info["config"]["name"] == "demo/vat"
    assert path.read_bytes()[8:9] == b"{"  # safetensors: 8-byte length, then a JSON header
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(RunDirError, match="safetensors"):
        load_exported(tmp_path / "junk.safetensors")


def test_predict_files_npz_and_images(runs, tmp_path):
    run = runs[0]
    from semireg.config import resolve
    from semireg.finished import load_finished_model
    from semireg.traindata import data_from_config

    data, _ = data_from_config(resolve(json.loads((run / "config.json").read_text())))
    x, _ = data.eval_sets["test"]
    model, _, _ = load_finished_model(run, data)
    with torch.no_grad():
        expected = model.eval()(x[:40]).argmax(1)
    np.savez(tmp_path / "x.npz", x=x[:40].numpy())
    rows = predict_files(run, [tmp_path / "x.npz"])
    assert [r["class"] for r in rows] == expected.tolist()
    for i in range(10):  # the same images as 8-bit PNG files, one pixel scale off at most
        Image.fromarray((x[i, 0].numpy() * 255).round().astype(np.uint8)).save(tmp_path / f"{i}.png")
    images = predict_files(run, [tmp_path / f"{i}.png" for i in range(10)], top=3)
    agree = sum(r["class"] == int(e) for r, e in zip(images, expected[:10]))
    assert agree >= 9 and len(images[0]["top"]) == 3
    assert main(["predict", str(run), str(tmp_path / "0.png"), "--out", str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "p.csv").read_text().startswith("file,index,class,name,probability\n")
    np.savez(tmp_path / "wrong.npz", x=np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(DataError, match="shape"):
        predict_files(run, [tmp_path / "wrong.npz"])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="cannot read image"):
        predict_files(run, [tmp_path / "broken.png"])
    with pytest.raises(RunDirError):
        predict_files(tmp_path / "not-a-run", [tmp_path / "x.npz"])


def test_predict_refuses_a_system_run(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"method": {"name": "disentangle"}, "data": {"dataset": "digits"}})
    )
    torch.save({"step": 1}, tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError, match="classifier"):
        predict_files(tmp_path, [tmp_path / "x.npz"])


def test_tensorboard_logger_writes_the_jsonl_scalars(tmp_path):
    pytest.importorskip("tensorboard")  # a dev dependency: installed wherever the suite runs
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "demo",
                "--variant",
                "vat",
                "--seeds",
                "0",
                "--run-dir",
                str(run),
                "train.steps=40",
                "train.eval_every=20",
                "train.log_every=10",
                "train.progress=false",
                "logger=tensorboard",
            ]
        )
        == 0
    )
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_loss = [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]
    assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars("train/loss")] == train_loss
    assert [e.step for e in events.Scalars("test/accuracy")] == [20, 40]
    assert main(["train", "demo", "--runs-root", str(tmp_path), "logger=wandb"]) == 2  # unknown logger: an error


def test_read_inputs_converts_channels_and_size(tmp_path):
    from semireg.export import read_inputs

    Image.new("L", (40, 30), 255).save(tmp_path / "gray.png")  # another size, one channel
    x = read_inputs(tmp_path / "gray.png", (3, 32, 32))
    assert x.shape == (1, 3, 32, 32) and torch.allclose(x, torch.ones_like(x))
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "red.jpg")
    assert read_inputs(tmp_path / "red.jpg", (1, 8, 8)).shape == (1, 1, 8, 8)
    np.savez(tmp_path / "one.npz", np.full((1, 8, 8), 128, np.uint8))  # a single example, uint8 pixels
    one = read_inputs(tmp_path / "one.npz", (1, 8, 8))
    assert one.shape == (1, 1, 8, 8) and abs(float(one.mean()) - 128 / 255) < 1e-6
    with pytest.raises(DataError, match="vectors"):
        read_inputs(tmp_path / "red.jpg", (64,))
