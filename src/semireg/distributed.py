"""Data-parallel training: who starts the processes, and the few collectives the loop needs.

Batch sizes in a config are global. Every rank draws the same global index batch from the same
sampler and keeps its contiguous share, so the samples seen per step do not depend on the number of
processes, no sample is drawn twice within a step, and a checkpoint resumes under any process count.
Gradients are averaged by DDP (Lightning Fabric). BatchNorm running statistics are kept per rank
(no broadcast at every forward) and averaged across ranks before each evaluation and checkpoint.

Three ways in:
- `train.devices=N [train.num_nodes=M]` in one process: the engine spawns N ranks (`ddp_spawn`; on
  CPU with the gloo backend) and returns rank 0's result;
- `torchrun --nproc-per-node N $(which semireg) train ...` or `fabric run ...`: the processes exist
  already; the world size comes from the environment and `train.devices` is not used;
- one process (the default): no collectives at all.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConfigError
from .hardware import resolve_precision
from .models import state_buffers


class _NoPrecisionNotice(logging.Filter):
    """Drops Lightning's "Using bfloat16 Automatic Mixed Precision (AMP)": semireg prints its own
    line saying which precision it chose and why (hardware.describe), once per run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Automatic Mixed Precision" not in record.getMessage()


logging.getLogger("lightning_fabric.utilities.rank_zero").addFilter(_NoPrecisionNotice())


def launched_externally() -> bool:
    """Whether torchrun / `fabric run` (or another torchelastic launcher) started this process."""
    # Imported here, not at the top: lightning_fabric (with torch._dynamo) costs ~2.5 s of the start-up
    # of every command, and only training needs it.
    from lightning_fabric.connector import _is_using_cli  # Fabric's own test for `fabric run`; no public name

    return _is_using_cli() or ("LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ and "RANK" in os.environ)


def env_rank() -> int:
    """This process's global rank as the launcher set it (0 without one): for printing on rank 0 only."""
    return int(os.environ.get("RANK", "0"))


def make_fabric(t) -> tuple[Any, bool]:
    """(Fabric for `t: TrainConfig`, spawn): spawn means this process must start the ranks itself
    with `fabric.launch(fn, ...)`; otherwise it is one rank (or the only process), already launched."""
    from lightning_fabric import Fabric  # lazy, as in launched_externally
    from lightning_fabric.connector import _is_using_cli
    from lightning_fabric.strategies import DDPStrategy

    precision = resolve_precision(t.precision, t.device).value
    if launched_externally():
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        strategy = DDPStrategy(forward_sync_buffers=False) if world > 1 else "auto"
        fabric = Fabric(
            accelerator=t.device,
            devices=local,
            num_nodes=max(1, world // local),
            strategy=strategy,
            precision=precision,
        )
        if not _is_using_cli():  # `fabric run` set the environment up in Fabric's constructor
            fabric.launch()
        return fabric, False
    if t.devices * t.num_nodes == 1:
        fabric = Fabric(accelerator=t.device, devices=1, precision=precision)
        fabric.launch()
        return fabric, False
    # DDP's default re-broadcasts BatchNorm buffers from rank 0 at every forward: several forwards a
    # step (VAT, FixMatch) would pay one collective each. We average them at sync points instead.
    strategy = DDPStrategy(start_method="spawn", forward_sync_buffers=False)
    os.environ["MASTER_PORT"] = str(rendezvous_port())
    return Fabric(
        accelerator=t.device, devices=t.devices, num_nodes=t.num_nodes, strategy=strategy, precision=precision
    ), True


def leave_process_group() -> None:
    """End of a spawned rank: wait for every rank, then tear the process group down. A rank that exits
    with its gloo group alive can abort in its exit handlers ("terminate called without an active
    exception", SIGABRT) while the other still talks to it."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def rendezvous_port() -> int:
    """A free port for the spawned ranks' rendezvous, below the kernel's ephemeral range.

    Lightning's own choice is a port the kernel just handed out as ephemeral: between the parent
    choosing it and rank 0 binding it, seconds later, any outgoing connection on the machine (another
    DDP group's gloo pairs among them) may take it, and the group fails with EADDRINUSE. A port below
    the ephemeral range is never handed to an outgoing connection. A user's MASTER_PORT is kept."""
    if "MASTER_PORT" in os.environ and os.environ.get("SEMIREG_PORT_CHOSEN") != os.environ["MASTER_PORT"]:
        return int(os.environ["MASTER_PORT"])
    low = 20000
    try:
        low = min(low, int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) - 2000)
    except (OSError, ValueError, IndexError):
        pass
    rng = random.Random()  # not torch's or numpy's generators: choosing a port must not move a run's random state
    for _ in range(100):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        os.environ["SEMIREG_PORT_CHOSEN"] = str(port)
        return port
    raise ConfigError("no free port for the ranks' rendezvous; set MASTER_PORT")


@dataclass
class Ranks:
    """This process's place among the data-parallel ranks and the collectives the loop uses.
    With world == 1 every method is the identity and no collective runs."""

    fabric: Any
    rank: int = 0
    world: int = 1

    @classmethod
    def of(cls, fabric) -> Ranks:
        return cls(fabric, fabric.global_rank, fabric.world_size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def check_divisible(self, **sizes: int) -> None:
        for key, size in sizes.items():
            if size % self.world:
                raise ConfigError(
                    f"{key}={size} is a global batch size and must be divisible by the "
                    f"{self.world} data-parallel processes"
                )

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch: (B, ...) -> (B / world, ...)."""
        if self.world == 1:
            return x
        n = len(x) // self.world
        return x[self.rank * n : (self.rank + 1) * n]

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's equal-sized (B, ...) tensor, concatenated in rank order: (world * B, ...).
        For state updates (no gradient flows back through it)."""
        if self.world == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world)]
        torch.distributed.all_gather(parts, x.detach().contiguous())
        return torch.cat(parts)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return x
        total = x.detach().clone()
        torch.distributed.all_reduce(total)  # a sum
        return total / self.world

    @torch.no_grad()
    def average_buffers(self, *modules: nn.Module | None) -> None:
        """Floating-point buffers (BatchNorm running statistics) averaged across ranks, in place."""
        if self.world == 1:
            return
        for module in modules:
            if module is None:
                continue
            buffers = [b for b in state_buffers(module) if b.is_floating_point()]  # not constants: a noise bank
            if buffers:
                flat = torch.cat([b.reshape(-1).float() for b in buffers])
                flat = self.mean(flat)
                for b, v in zip(buffers, flat.split([b.numel() for b in buffers])):
                    b.copy_(v.view_as(b))

    def predict(self, predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """predict(x) for the whole of x (N, ...), each rank computing one contiguous share: (N, K) on every rank."""
        if self.world == 1:
            return predict(x)
        n = len(x)
        per = -(-n // self.world)
        part = x[self.rank * per : (self.rank + 1) * per]
        if len(part) < per:  # the last shares are padded with the final image so all_gather sees equal sizes
            part = torch.cat([part, x[-1:].expand(per - len(part), *x.shape[1:])])
        return self.gather(predict(part))[:n]

    def objects(self, obj: Any) -> list[Any]:
        """Every rank's picklable `obj`, in rank order."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def assert_same(self, what: str, tensors: list[torch.Tensor]) -> None:
        """Raise if the ranks hold different values (a data-parallel bug, caught where it starts)."""
        if self.world == 1 or not tensors:
            return
        probe = torch.stack([t.detach().double().sum() for t in tensors])  # (T,)
        everyone = self.gather(probe[None])  # (world, T)
        if not torch.equal(everyone, everyone[:1].expand_as(everyone)):
            raise RuntimeError(f"data-parallel ranks disagree on {what}: {everyone.tolist()}")

    def barrier(self) -> None:
        if self.world > 1:
            self.fabric.barrier()
