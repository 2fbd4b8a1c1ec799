"""Ranks and dealing: who this process is among several, and which cells or batches are its own.

A process learns its rank and the world size from torchrun's environment (RANK, WORLD_SIZE; LOCAL_RANK picks
the GPU), or from `--shard i/n` for job arrays started without torchrun (no process group: ranks never talk,
they share only the output folder). Work is dealt round-robin, item k to rank k mod n (`items[rank::world]`),
over the whole ordered list, never over what is left, so the dealing does not depend on what any process has
finished. Under torchrun the process group uses gloo on the CPU and nccl on CUDA.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TypeVar

import torch
import torch.distributed as dist

from .errors import DiffsolveError

T = TypeVar("T")


@dataclass(frozen=True)
class Rank:
    """This process's place: rank in [0, world); `group` says a torch.distributed process group joins them."""

    rank: int = 0
    world: int = 1
    group: bool = False
    joined: bool = False  # this process joined the process group in `start` (so `stop` leaves it)

    @property
    def leader(self) -> bool:
        """Rank 0 merges and reports."""
        return self.rank == 0

    @property
    def label(self) -> str:
        """The name of this rank's store shard, e.g. 'rank1-of-4'."""
        return f"rank{self.rank}-of-{self.world}"


def parse_shard(text: str) -> Rank:
    """'i/n' (0 ≤ i < n) → Rank(i, n) without a process group."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        i, n = -1, 0
    if n < 1 or not 0 <= i < n:
        raise DiffsolveError(f"--shard takes i/n with 0 <= i < n (this job's index and the number of jobs), got "
                             f"{text!r}; e.g. --shard 0/4 … --shard 3/4, or --shard $SLURM_ARRAY_TASK_ID/4")
    return Rank(i, n)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise DiffsolveError(f"environment variable {name}={value!r} is not an integer; torchrun sets it, "
                             f"unset it when not running under torchrun") from None


def from_env() -> Rank:
    """The rank torchrun gave this process (RANK, WORLD_SIZE), or Rank(0, 1) when it was not started by torchrun."""
    rank, world = _env_int("RANK"), _env_int("WORLD_SIZE")
    if rank is None or world is None:
        return Rank()
    if world < 1 or not 0 <= rank < world:
        raise DiffsolveError(f"RANK={rank} and WORLD_SIZE={world} do not describe a rank; torchrun sets them, "
                             f"unset them when not running under torchrun")
    return Rank(rank, world, group=world > 1)


def backend() -> str:
    """nccl when this process drives a CUDA device, else gloo."""
    return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def default_device() -> str:
    """cuda:LOCAL_RANK when CUDA is available (one GPU per local rank), else cpu."""
    return f"cuda:{_env_int('LOCAL_RANK') or 0}" if torch.cuda.is_available() else "cpu"


def available_device(spec: str, flag: str = "--device") -> torch.device:
    """The torch device `spec` names, checked to exist on this machine (a tensor is made there); else a
    DiffsolveError naming `flag`, the value and the devices there are (used by sample --device and tune --device)."""
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise DiffsolveError(f"{flag} {spec!r} is not a torch device; give e.g. cpu or cuda:0") from None
    try:
        torch.empty(1, device=device)
    except Exception as e:  # noqa: BLE001 — no CUDA, no such GPU, a backend not built in: all the same to the user
        have = f"cpu or cuda:0 … cuda:{torch.cuda.device_count() - 1}" if torch.cuda.is_available() else "cpu"
        raise DiffsolveError(f"{flag} {spec!r} is not available on this machine ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); give {have}") from None
    return device


def start(shard: str | None = None) -> Rank:
    """This process's Rank: from --shard (job arrays) or torchrun's environment, joining its process group."""
    env = from_env()
    if shard is not None:
        if env.world > 1:
            raise DiffsolveError(f"--shard {shard} under torchrun (WORLD_SIZE={env.world}): torchrun already deals "
                                 f"the work to its ranks; drop --shard, or run without torchrun")
        return parse_shard(shard)
    if env.group and not dist.is_initialized():
        name = backend()
        if name == "nccl":
            torch.cuda.set_device(_env_int("LOCAL_RANK") or 0)
        dist.init_process_group(name)
        return replace(env, joined=True)
    return env


def barrier(rank: Rank) -> None:
    """Wait for every rank of the process group (nothing to wait for without one)."""
    if rank.group and dist.is_initialized():
        dist.barrier()


def stop(rank: Rank) -> None:
    """Leave the process group if `start` joined it (one the caller made is the caller's)."""
    if rank.joined and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def ranked(shard: str | None = None) -> Iterator[Rank]:
    """`start(shard)` … `stop(rank)` around the with-block."""
    rank = start(shard)
    try:
        yield rank
    finally:
        stop(rank)


def deal(items: Sequence[T], rank: Rank) -> list[T]:
    """This rank's items: k-th item to rank k mod world, over the whole list (items[rank::world])."""
    return list(items[rank.rank::rank.world])
