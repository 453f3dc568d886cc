"""The messages a person gets for damaged data, a checkpoint of another model and a config from a
newer version (the table in docs/reliability.md). Needs MNIST under $SEMIREG_DATA.

    SEMIREG_DATA=../shared/data python benchmarks/qa/error_messages.py
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from semireg import rundir
from semireg.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # the drill lives with the tests
from faults import DRILL_ARGS


def run(args: list[str]) -> tuple[int, list[str]]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, [line for line in err.getvalue().splitlines() if line.startswith("semireg: error")]


def messages(root: Path) -> None:
    base = ["train", "demo", "--variant", "vat", "--seeds", "0", "train.steps=30", "train.progress=false"]
    run(base + ["--run-dir", str(root / "run")])
    run(base + ["--run-dir", str(root / "other"), "model.hidden=[32]"])
    shutil.copytree(Path(os.environ["SEMIREG_DATA"]) / "mnist", root / "data" / "mnist")
    labels = root / "data" / "mnist" / "train-labels-idx1-ubyte.gz"
    raw = labels.read_bytes()
    mnist = [
        "train",
        "mnist-100-vat",
        "--variant",
        "baseline",
        "--seeds",
        "0",
        "--run-dir",
        str(root / "run"),
        "--overwrite",
        "--data-dir",
        str(root / "data"),
        "train.steps=5",
    ]
    labels.write_bytes(raw[: len(raw) // 2])
    print("truncated .gz:", run(mnist))
    labels.write_bytes(raw[:40] + bytes(b ^ 0xFF for b in raw[40:80]) + raw[80:])
    print("corrupted .gz:", run(mnist))
    data = bytearray(gzip.decompress(raw))
    data[100] ^= 1
    labels.write_bytes(gzip.compress(bytes(data)))
    print("one flipped bit:", run(mnist))
    labels.write_bytes(raw)
    shutil.copy(root / "other" / "checkpoint.pt", root / "run" / "checkpoint.pt")
    for command in ("train --resume", "eval", "export"):
        print(f"another model, {command}:", run([*command.split(), str(root / "run")]))
    config = json.loads((root / "other" / "config.json").read_text())
    config["version"] += 1
    (root / "other" / "config.json").write_text(json.dumps(config))
    for command in ("train --resume", "eval", "report", "export"):
        print(f"newer config, {command}:", run([*command.split(), str(root / "other")]))
    from PIL import Image

    folders = root / "folders"
    for cls in ("a", "b"):
        (folders / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folders / cls / f"{i}.png")
    (folders / "b" / "3.png").write_bytes((folders / "b" / "3.png").read_bytes()[:30])
    print(
        "truncated PNG in a class folder:",
        run(
            [
                "train",
                "demo",
                "--runs-root",
                str(root / "runs"),
                f"data.dataset=folder:{folders}",
                "data.n_labeled=4",
                "data.n_test=2",
                "train.steps=2",
            ]
        ),
    )
    (root / "half.pt").write_bytes((root / "other" / "checkpoint.pt").read_bytes()[:1000])
    try:
        rundir.load_checkpoint(root / "half.pt")
    except Exception as exc:  # the message is what this script shows
        print("truncated checkpoint:", type(exc).__name__, exc)
    second_writer(root / "busy")


def second_writer(run_dir: Path) -> None:
    """`semireg train --resume RUN` (and report, eval, export) while another process trains RUN."""
    train = subprocess.Popen(
        [sys.executable, "-m", "semireg.cli", "train", *DRILL_ARGS, "train.steps=100000", "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not (run_dir / rundir.CHECKPOINT).exists():
            time.sleep(0.05)
        for command in ("train --resume", "report", "eval", "export"):
            print(f"second writer, {command}:", run([*command.split(), str(run_dir)]))
    finally:
        train.kill()
        train.wait()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        messages(Path(tmp))
