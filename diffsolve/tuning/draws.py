"""Draws of x_T cut into chunks, dealt to ranks, and reductions that do not depend on the world size.

Chunk k holds draws [start, stop) of one seed (n draws per seed, `size` per chunk). Every computation runs on whole
chunks, one batch each, chunk k on rank k mod world (diffsolve.distributed.deal). A reduction fills a (chunks, width)
float64 table with each rank's own rows, sums it over the ranks (exact: every other row is zero) and then over the
chunks in their order. So the numbers do not depend on the world size, bit for bit on the CPU (docs/design.md §9).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from ..distributed import Rank, deal
from ..schedules import F64


@dataclass(frozen=True)
class Chunk:
    """Draws [start, stop) of the `draws` drawn from `seed`, the index-th chunk of its set."""

    index: int
    seed: int
    start: int
    stop: int
    draws: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def chunks_of(seeds: list[int], n: int, size: int) -> list[Chunk]:
    """The chunks of n draws per seed, `size` draws each (the last of a seed may be smaller)."""
    out: list[Chunk] = []
    for seed in seeds:
        for start in range(0, n, size):
            out.append(Chunk(len(out), seed, start, min(start + size, n), n))
    return out


class Pool:
    """The chunks of one set of draws and this process's rank among those that share them."""

    def __init__(self, chunks: list[Chunk], rank: Rank):
        self.chunks, self.rank = chunks, rank
        self.mine: list[Chunk] = deal(chunks, rank)
        nccl = rank.group and dist.is_initialized() and dist.get_backend() == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")

    @property
    def draws(self) -> int:
        """The number of draws in the set (every rank's)."""
        return sum(c.size for c in self.chunks)

    def table(self, fn: Callable[[Chunk], Tensor], width: int) -> Tensor:
        """Row k = fn(chunk k) (`width` values, zero-padded) for every rank's chunks, float64 on the CPU."""
        out = torch.zeros(len(self.chunks), width, dtype=F64, device=self.device)
        for c in self.mine:
            row = fn(c).detach().reshape(-1).to(device=self.device, dtype=F64)
            out[c.index, : row.numel()] = row
        if self.rank.group:
            dist.all_reduce(out)
        return out.cpu()

    def total(self, fn: Callable[[Chunk], Tensor], width: int) -> Tensor:
        """Σ_k fn(chunk k), summed in chunk order (the same numbers for every world size)."""
        return self.table(fn, width).sum(0)

    def per_draw(self, fn: Callable[[Chunk], Tensor]) -> Tensor:
        """fn(chunk) gives one value per draw of the chunk: all of them, in draw order."""
        width = max(c.size for c in self.chunks)
        table = self.table(fn, width)
        return torch.cat([table[c.index, : c.size] for c in self.chunks])

    def count(self, value: int) -> int:
        """Σ over the ranks of a per-rank count."""
        if not self.rank.group:
            return value
        t = torch.tensor([float(value)], dtype=F64, device=self.device)
        dist.all_reduce(t)
        return int(t.item())
