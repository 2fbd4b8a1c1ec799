"""What the NFEs of one tune() call share: the model in the network's dtype, the draws and their chunks, the ranks,
the ledger, and the teacher on each set of draws (training: recorded for the DP; validation, held-out: end states).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..distributed import Rank
from ..models import Model
from ..problems import Problem
from ..schedules import Schedule
from .dp import ddim_sq_errors, rmse_costs
from .draws import Chunk, Pool, chunks_of
from .ledger import Ledger
from .objective import Batch
from .teacher import CHECK_DRAWS, Record, Teacher, TeacherCache, solve_teacher


@dataclass
class Level:
    """The teacher at one level of refinement (N = N_0·2^level) on the training draws."""

    teacher: Teacher
    data: dict[int, Batch]
    records: dict[int, Record]
    error: float  # RMSE of its end states against the teacher at 2N on the check subset
    costs: np.ndarray | None = None  # the DP's cost matrix (made on first use)


@dataclass
class Session:
    """The shared state of one tune() call."""

    problem: Problem
    schedule: Schedule
    model: Model
    dtype: torch.dtype
    device: torch.device
    rank: Rank
    ledger: Ledger
    cache: TeacherCache
    n: int
    chunk: int
    candidates: int
    teacher_nfe: int
    train_seeds: list[int]
    dim: int = 1
    estimate: int = 0  # forward sample-evaluations expected (printed before the work)
    levels: dict[int, Level] = field(default_factory=dict)
    sets: dict[tuple[Any, ...], tuple[Pool, dict[int, Batch]]] = field(default_factory=dict)
    _x: dict[int, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.train = self.pool(self.train_seeds)

    def teacher(self, level: int) -> Teacher:
        return Teacher(self.teacher_nfe * 2**level, self.candidates)

    def pool(self, seeds: list[int]) -> Pool:
        return Pool(chunks_of(list(seeds), self.n, self.chunk), self.rank)

    def x_T(self, c: Chunk) -> Tensor:
        """The chunk's draws of x_T on the device, in the network's dtype."""
        if c.seed not in self._x:
            self._x[c.seed] = self.problem.x_T(self.n, c.seed, self.schedule)
        return self._x[c.seed][c.start:c.stop].to(device=self.device, dtype=self.dtype)

    def key(self, c: Chunk, teacher: Teacher, record: bool, count: int | None = None) -> dict[str, Any]:
        settings = teacher.settings()
        if not record:
            settings.pop("candidates")
        return {"seed": c.seed, "n": self.n, "start": c.start, "stop": c.stop if count is None else c.start + count,
                "teacher": settings, "record": record, "dtype": str(self.dtype), "device": self.device.type}

    def solve(self, c: Chunk, teacher: Teacher, record: bool, count: int | None = None) -> Record:
        """The chunk's teacher (its first `count` draws), from the cache or solved now (counted, on the bar)."""
        x = self.x_T(c)[:count]
        rec, _ = self.ledger.run(x.shape[0], lambda: self.cache.get(
            self.key(c, teacher, record, count), lambda: solve_teacher(self.model, teacher, x, record)))
        self.ledger.tick()
        return Record(*(None if v is None else v.to(self.device) for v in (rec.end, rec.path, rec.eps)))

    def level(self, level: int) -> Level:
        """The teacher at `level` on the training draws, recorded, with its measured error."""
        if level not in self.levels:
            teacher, pool = self.teacher(level), self.train
            with self.ledger.stage_bar(f"teacher N={teacher.nfe}", len(pool.mine) + 1, "chunk"):
                records = {c.index: self.solve(c, teacher, True) for c in pool.mine}
                error = self._check(pool, teacher, records)
            data = {i: Batch(self.x_T(pool.chunks[i]), r.end) for i, r in records.items()}
            self.levels[level] = Level(teacher, data, records, error)
        return self.levels[level]

    def _check(self, pool: Pool, teacher: Teacher, records: dict[int, Record]) -> float:
        """RMSE of the teacher's end states against the teacher at 2N on the first chunk's first draws."""
        first = pool.chunks[0]
        count = min(CHECK_DRAWS, first.size)

        def sq(c: Chunk) -> Tensor:
            if c.index != first.index:
                return torch.zeros(1)
            finer = self.solve(c, teacher.finer(), False, count).end
            return torch.sum((records[c.index].end[:count].double() - finer.double()) ** 2).reshape(1)
        return math.sqrt(float(pool.total(sq, 1)[0]) / (count * self.dim))

    def ends(self, seeds: list[int], level: int, label: str) -> tuple[Pool, dict[int, Batch]]:
        """Draws of other seeds (validation, held-out) with the teacher's end states at `level`."""
        key = (tuple(seeds), level)
        if key not in self.sets:
            pool, teacher = self.pool(seeds), self.teacher(level)
            with self.ledger.stage_bar(f"{label} teacher N={teacher.nfe}", len(pool.mine), "chunk"):
                data = {c.index: Batch(self.x_T(c), self.solve(c, teacher, False).end) for c in pool.mine}
            self.sets[key] = (pool, data)
        return self.sets[key]

    def costs(self, level: int) -> tuple[np.ndarray, Tensor]:
        """(the DP cost matrix along the teacher at `level`, the candidate times)."""
        lv = self.level(level)
        times = lv.teacher.grid(self.schedule).t[lv.teacher.nodes()]
        if lv.costs is None:
            m = len(times)

            def sq(c: Chunk) -> Tensor:
                rec = lv.records[c.index]
                assert rec.path is not None and rec.eps is not None
                return ddim_sq_errors(self.schedule, times, rec.path, rec.eps).reshape(-1)
            lv.costs = rmse_costs(self.train.total(sq, m * m).reshape(m, m), self.train.draws * self.dim)
        return lv.costs, times
