"""Faults: SIGKILL mid-run and mid-checkpoint, damaged data files, a checkpoint of another model,
a config from a newer version. Each ends in the weights an uninterrupted run has, or in one
clear error with nothing overwritten. (The long drills: benchmarks/qa/fault_drill.py.)"""

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import SHARED_DATA, mnist_available
from faults import compare_runs, interrupted_run, run_uninterrupted

from semireg import rundir
from semireg.cli import main
from semireg.errors import RunDirError


def _snapshot(directory):
    """Every file's bytes, by path: to show that nothing was touched."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_sigkill_at_random_steps_then_resume_ends_on_identical_weights(tmp_path):
    steps = 200
    run_uninterrupted(tmp_path / "reference", steps)
    drill = interrupted_run(tmp_path / "interrupted", steps, kills=3, seed=7)
    assert len(drill.kills) >= 2, drill.to_dict()  # the drill really killed it, more than once
    assert all(k.checkpoint_step <= k.logged_step for k in drill.kills)
    drill = compare_runs(tmp_path / "reference", tmp_path / "interrupted", drill)
    assert drill.identical, drill.differing  # weights, optimizer, EMA, sampler and RNG states, bit for bit
    assert drill.metrics_identical  # and every logged loss and accuracy


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_one(tmp_path):
    path = tmp_path / "checkpoint.pt"
    # The child writes a good checkpoint, then dies by SIGKILL halfway through writing the next.
    child = textwrap.dedent(f"""
        import io, os, signal, torch
        from semireg import rundir
        path = rundir.Path({str(path)!r})
        rundir.save_checkpoint(path, {{"step": 1, "w": torch.arange(10.0)}})
        real_save = torch.save
        def dying_save(obj, f):
            buf = io.BytesIO(); real_save(obj, buf); data = buf.getvalue()
            with open(f, "wb") as fh:
                fh.write(data[: len(data) // 2]); fh.flush(); os.fsync(fh.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        rundir.save_checkpoint(path, {{"step": 2, "w": torch.zeros(100000)}})
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-500:]
    tmp = path.with_name(path.name + ".tmp")
    assert tmp.exists()  # the torn write is there ...
    with pytest.raises(RunDirError, match="cannot load checkpoint"):
        rundir.load_checkpoint(tmp)
    state = rundir.load_checkpoint(path)  # ... and the previous checkpoint is intact
    assert state["step"] == 1 and torch.equal(state["w"], torch.arange(10.0))
    rundir.save_checkpoint(path, {"step": 3})  # the next write goes through the torn file
    assert rundir.load_checkpoint(path)["step"] == 3 and not tmp.exists()


def _digits_run(tmp_path, name="run", *extra):
    run = tmp_path / name
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
                "train.steps=30",
                "train.progress=false",
                *extra,
            ]
        )
        == 0
    )
    return run


def test_checkpoint_of_another_model_is_refused_and_nothing_changes(tmp_path, capsys):
    run = _digits_run(tmp_path)
    other = _digits_run(tmp_path, "other", "model.hidden=[32]")
    shutil.copy(other / "checkpoint.pt", run / "checkpoint.pt")
    before = _snapshot(run)
    for args in (
        ["train", "--resume", str(run)],
        ["eval", str(run)],
        ["predict", str(run), str(run / "split.npz")],
        ["export", str(run)],
    ):
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert "checkpoint of another model (Missing key(s)" in err, (args, err)
        assert _snapshot(run) == before, args


def test_config_from_a_newer_version_is_refused_and_nothing_changes(tmp_path, capsys):
    run = _digits_run(tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["version"] = config["version"] + 1
    (run / "config.json").write_text(json.dumps(config))
    before = _snapshot(run)
    for args in (
        ["train", "--resume", str(run)],
        ["eval", str(run)],
        ["report", str(run)],
        ["predict", str(run), str(run / "split.npz")],
        ["export", str(run)],
    ):
        capsys.readouterr()
        assert main(args) == 2, args
        assert "newer" in capsys.readouterr().err, args
        assert _snapshot(run) == before, args


def _mnist_copy(tmp_path):
    if not mnist_available():
        pytest.skip("../shared/data/mnist not present")
    copy = tmp_path / "data" / "mnist"
    shutil.copytree(SHARED_DATA / "mnist", copy)
    return copy


@pytest.mark.parametrize("damage", ["truncated-gz", "corrupted-gz", "flipped-byte"])
def test_damaged_mnist_file_is_a_clear_error_and_the_run_is_kept(tmp_path, capsys, damage):
    copy = _mnist_copy(tmp_path)
    target = copy / "train-labels-idx1-ubyte.gz"
    raw = target.read_bytes()
    if damage == "truncated-gz":
        target.write_bytes(raw[: len(raw) // 2])
    elif damage == "corrupted-gz":
        target.write_bytes(raw[:40] + bytes(b ^ 0xFF for b in raw[40:80]) + raw[80:])
    else:  # a valid gzip of bytes that differ from the published file in one place
        data = bytearray(gzip.decompress(raw))
        data[100] ^= 0x01
        target.write_bytes(gzip.compress(bytes(data)))
    run = tmp_path / "run"
    shutil.copytree(_digits_run(tmp_path, "seed-run"), run)  # an existing run, to be replaced
    before = _snapshot(run)
    capsys.readouterr()
    args = [
        "train",
        "mnist-100-vat",
        "--variant",
        "baseline",
        "--run-dir",
        str(run),
        "--overwrite",
        "--data-dir",
        str(copy.parent),
        "--seeds",
        "0",
        "train.steps=5",
        "train.progress=false",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "train-labels-idx1-ubyte" in err and err.count("\n") == 2, err  # banner line + one error line
    assert _snapshot(run) == before  # --overwrite never deleted the old run: the data failed first


def test_damaged_image_in_a_class_folder_is_a_clear_error(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "folders"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / cls / f"{i}.png")
    (root / "b" / "3.png").write_bytes((root / "b" / "3.png").read_bytes()[:30])  # truncated PNG
    assert (
        main(
            [
                "train",
                "demo",
                "--runs-root",
                str(tmp_path / "runs"),
                f"data.dataset=folder:{root}",
                "data.n_labeled=4",
                "data.n_test=2",
                "train.steps=2",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "b/3.png" in err and "cannot decode image" in err
    assert not (tmp_path / "runs").exists()


def test_a_failed_checkpoint_write_is_one_error_and_keeps_the_previous(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    rundir.save_checkpoint(path, {"step": 1})

    def disk_full(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(RunDirError, match="No space left"):
        rundir.save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert rundir.load_checkpoint(path)["step"] == 1 and not path.with_name("checkpoint.pt.tmp").exists()
