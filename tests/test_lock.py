"""One writer per run directory: a second process that would write a run being trained is refused
with one line naming the directory and the holder; a holder killed with SIGKILL leaves no lock
behind, and its run resumes. Readers (compare, a comparison page elsewhere) never block."""

import os
import signal
import subprocess
import sys
import time

import pytest
from faults import DRILL_ARGS

from semireg import cli, rundir
from semireg.errors import RunDirError

SLOW_RUN = [*DRILL_ARGS, "train.steps=100000", "train.checkpoint_every=5"]


def _cli(*args):
    return [sys.executable, "-m", "semireg.cli", *args]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _start_training(run_dir):
    """A training process that runs until killed; returned once it has written its first checkpoint."""
    proc = subprocess.Popen(
        _cli("train", *SLOW_RUN, "--run-dir", str(run_dir)),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while not (run_dir / rundir.CHECKPOINT).exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the training process wrote no checkpoint"
        time.sleep(0.05)
    # From here on it only has to hold the lock: at the lowest priority it trains on idle CPU only, instead of
    # taking a core from the other test worker until it is killed.
    os.setpriority(os.PRIO_PROCESS, proc.pid, 19)
    return proc


def test_lock_in_one_process_is_reentrant_and_released(tmp_path):
    run = tmp_path / "run"
    with rundir.writer_lock(run):
        with rundir.writer_lock(run):  # the holder may write again (a report inside training)
            assert f"process {os.getpid()}" in (run / rundir.LOCK).read_text()
    assert (run / rundir.LOCK).read_text() == ""  # released: nobody named
    with rundir.writer_lock(run):  # and can be taken again
        pass


@pytest.mark.slow
def test_a_second_writer_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path, capsys):
    run = tmp_path / "run"
    proc = _start_training(run)
    try:
        # Another process resuming the same run: exit 2, one line naming the directory and the holder.
        second = subprocess.run(
            _cli("train", "--resume", str(run)), env=_env(), capture_output=True, text=True, timeout=300
        )
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("semireg: error: "), second.stderr
        assert str(run) in lines[0] and f"process {proc.pid}" in lines[0], lines[0]
        # Other writers too: rebuilding the report, evaluating, exporting into the run directory. The CLI's
        # entry point is called in this process (the holder is another process all the same), which spares
        # the suite a Python start with torch per command.
        for args in (["report", str(run)], ["eval", str(run)], ["export", str(run)]):
            assert cli.main(args) == 2, args
            err = capsys.readouterr().err
            assert err.startswith("semireg: error: ") and f"process {proc.pid}" in err, (args, err)
        # In this process (the Python API) the same refusal is a RunDirError.
        with pytest.raises(RunDirError, match="being written by process"):
            with rundir.writer_lock(run):
                pass
        # A reader never blocks: a comparison over the running run's directory.
        cli.main(["compare", str(run)])
        assert "being written" not in capsys.readouterr().err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # SIGKILL released the lock: `--resume` takes it and trains on past the last checkpoint.
    killed_at = int(rundir.load_checkpoint(run / rundir.CHECKPOINT)["step"])
    resumed = subprocess.Popen(
        _cli("train", "--resume", str(run)), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 180
        while int(rundir.load_checkpoint(run / rundir.CHECKPOINT)["step"]) <= killed_at:
            assert resumed.poll() is None, resumed.stderr.read()
            assert time.monotonic() < deadline, "the resumed run wrote no new checkpoint"
            time.sleep(0.05)
        assert f"process {resumed.pid}" in (run / rundir.LOCK).read_text()
    finally:
        resumed.kill()
        resumed.wait()
