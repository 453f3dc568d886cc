"""The run directory: resolved config, code version, seed, split, metrics (JSONL), checkpoints,
and the lock that keeps a second process from writing it at the same time."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError, RunDirError
from .version import CONFIG_VERSION, __version__

CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"  # inside the run directory; holds the writer's pid and command while it writes


def prepare(run_dir: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse to clobber an existing run unless asked; nothing is deleted before training starts."""
    check_target(run_dir, overwrite=overwrite, resume=resume)
    if resume:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    for entry in _entries(run_dir):  # everything but the lock this process holds
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _entries(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.iterdir() if p.name != LOCK] if run_dir.is_dir() else []


def check_target(run_dir: Path, *, overwrite: bool, resume: bool) -> None:
    """The errors `prepare` would raise, without touching anything (a parent checks before spawning ranks)."""
    if resume:
        if not (run_dir / CHECKPOINT).exists():
            raise RunDirError(f"{run_dir}: no {CHECKPOINT} to resume from")
    elif _entries(run_dir) and not overwrite:
        raise RunDirError(f"{run_dir} already exists; pass --overwrite to replace it or --resume to continue it")


def read_config(run_dir: Path) -> dict[str, Any]:
    """run_dir/config.json as a tree; a damaged file, or one written by a newer semireg, is an
    error that names the file."""
    path = run_dir / "config.json"
    if not path.exists():
        raise RunDirError(f"{run_dir}: no config.json; not a semireg run directory")
    try:
        tree = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(tree, dict):
        raise RunDirError(f"{path}: expected a JSON object")
    version = tree.get("version", CONFIG_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > CONFIG_VERSION:
        raise ConfigError(
            f"{path}: config version {version} was written by a newer semireg "
            f"(this one reads version {CONFIG_VERSION}); upgrade semireg"
        )
    return tree


def code_version() -> dict[str, Any]:
    """The code this process runs: read once, at first use, so that a commit made while a long
    job is running is not recorded for code the job imported before it."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        _CODE_VERSION = _read_code_version()
    return dict(_CODE_VERSION)


_CODE_VERSION: dict[str, Any] | None = None


def _read_code_version() -> dict[str, Any]:
    info: dict[str, Any] = {"semireg": __version__, "torch": torch.__version__, "python": platform.python_version()}
    src = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--", "."], cwd=src, capture_output=True, text=True, timeout=5
            )
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def hardware() -> dict[str, Any]:
    info = {"machine": platform.machine(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file. A torn last line (a process killed while appending) is
    dropped; a damaged line before it is an error."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break
            raise RunDirError(f"{path}: line {i + 1} is not valid JSON ({exc})") from None
    return records


class MetricsLog:
    """metrics.jsonl (always: the record the report, compare and resume read) and, with
    `logger="tensorboard"`, the same scalars as TensorBoard events in run_dir/tensorboard/.
    Tags: train/<term> (a system's: train/<phase>/<term>), <split>/<metric> for evaluations
    (a system's: eval/<metric>)."""

    def __init__(self, run_dir: Path, logger: str = "jsonl") -> None:
        self.path = run_dir / "metrics.jsonl"
        self.writer = None
        if logger == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional: the tensorboard package
            except ImportError:
                raise ConfigError("logger=tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), flush_secs=10)

    def write(self, record: dict[str, Any]) -> None:
        append_jsonl(self.path, record)
        if self.writer is None:
            return
        prefix = record.get("split", "eval") if record.get("kind") == "eval" else "train"
        for key, value in record.items():
            if key not in ("kind", "step", "split") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop records logged after `max_step` (they will be logged again on resume), and a torn last line."""
    if not path.exists():
        return
    keep = [r for r in read_jsonl(path) if r.get("step", 0) <= max_step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, path)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file, then rename: a crash mid-write leaves the old checkpoint intact."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        _fsync(tmp)  # the bytes on disk before the rename makes them the checkpoint (a power cut, not just a kill)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a vanished directory: the previous checkpoint is still the checkpoint
        tmp.unlink(missing_ok=True)
        raise RunDirError(f"{path}: cannot write checkpoint ({exc}); the previous one, if any, is intact") from None
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory
    finally:
        os.close(fd)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file: say which and why, in one line
        raise RunDirError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None


# ----------------------------------------------------------------------------- one writer at a time

# Locks this process holds, by resolved path: [open lock file, depth]. A process that already
# writes a run directory may enter it again (training writes its report; `train` then runs the
# robustness evaluation into the same directory) without refusing itself.
_HELD: dict[Path, list[Any]] = {}


@contextmanager
def writer_lock(run_dir: Path, command: str = "") -> Iterator[None]:
    """Hold the run directory's writer lock (created with the directory if need be) while inside.

    The lock is `flock` on RUN_DIR/.lock: the kernel drops it when the holder exits, however it
    exits (SIGKILL included), so a stale lock never needs cleaning up. A second process that tries
    to write the same directory gets a RunDirError naming the holder; readers never take it."""
    key = run_dir.resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunDirError(
            f"{run_dir} is being written by {holder}; wait for it to finish or stop it (one writer per run directory)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} ({command or _command()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
    handle.flush()
    _HELD[key] = [handle, 1]
    try:
        yield
    finally:
        _HELD.pop(key)
        handle.truncate(0)  # no holder named in a lock nobody holds
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _command() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    name = "semireg" if name in ("cli.py", "__main__.py") else name  # `python -m semireg.cli`
    return " ".join([name, *sys.argv[1:3]])
