"""What the NFEs of one tune() call share: the model in the network's dtype, the draws and their chunks, the ranks,
the ledger, and the teacher on each set of draws (training: recorded for the DP; validation, held-out: end states).
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
from .settings import TEACHER_LEVELS as LEVELS
from .teacher import CHECK_DRAWS, Record, Teacher, TeacherCache, solve_teacher


@dataclass
class Level:
    """The teacher at one level of refinement (N = N_0·2^level) on the training draws."""

    teacher: Teacher
    data: dict[int, Batch]
    records: dict[int, Record]
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
    levels: dict[Teacher, Level] = field(default_factory=dict)
    errors: dict[Teacher, float] = field(default_factory=dict)
    sets: dict[tuple[Any, ...], tuple[Pool, dict[int, Batch]]] = field(default_factory=dict)
    _x: dict[tuple[int, int], Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.train = self.pool(self.train_seeds)

    def ladder(self, scheme: int) -> list[Teacher]:
        """The teachers of one scheme at levels 0 … TEACHER_LEVELS − 1."""
        return [Teacher(self.teacher_nfe * 2**level, self.candidates, scheme) for level in range(LEVELS)]

    def pool(self, seeds: list[int], n: int | None = None) -> Pool:
        """n draws (default the training n) per seed, in chunks."""
        return Pool(chunks_of(list(seeds), n or self.n, self.chunk), self.rank)

    def x_T(self, c: Chunk) -> Tensor:
        """The chunk's draws of x_T on the device, in the network's dtype."""
        if (c.seed, c.draws) not in self._x:
            self._x[c.seed, c.draws] = self.problem.x_T(c.draws, c.seed, self.schedule)
        return self._x[c.seed, c.draws][c.start:c.stop].to(device=self.device, dtype=self.dtype)

    def key(self, c: Chunk, teacher: Teacher, record: bool, count: int | None = None) -> dict[str, Any]:
        settings = teacher.settings()
        if not record:
            settings.pop("candidates")
        return {"seed": c.seed, "n": c.draws, "start": c.start, "stop": c.stop if count is None else c.start + count,
                "teacher": settings, "record": record, "dtype": str(self.dtype), "device": self.device.type}

    def solve(self, c: Chunk, teacher: Teacher, record: bool, count: int | None = None) -> Record:
        """The chunk's teacher (its first `count` draws), from the cache or solved now (counted, on the bar)."""
        x = self.x_T(c)[:count]
        rec, _ = self.ledger.run(x.shape[0], lambda: self.cache.get(
            self.key(c, teacher, record, count), lambda: solve_teacher(self.model, teacher, x, record)))
        self.ledger.tick()
        return Record(*(None if v is None else v.to(self.device) for v in (rec.end, rec.path, rec.eps)))

    def level(self, teacher: Teacher) -> Level:
        """The teacher on the training draws, recorded."""
        if teacher not in self.levels:
            pool = self.train
            with self.ledger.stage_bar(f"teacher {teacher.solver} N={teacher.nfe}", len(pool.mine), "chunk"):
                records = {c.index: self.solve(c, teacher, True) for c in pool.mine}
            data = {i: Batch(self.x_T(pool.chunks[i]), r.end) for i, r in records.items()}
            self.levels[teacher] = Level(teacher, data, records)
        return self.levels[teacher]

    def subset_rmse(self, fn: Callable[[Tensor], Tensor], teacher: Teacher) -> float:
        """RMSE of fn(x_T) on the subset (the first training chunk's first CHECK_DRAWS draws) against `teacher` there
        (solved by the rank that holds the chunk, cached; the value reduced over the ranks)."""
        first = self.train.chunks[0]
        count = min(CHECK_DRAWS, first.size)

        def sq(c: Chunk) -> Tensor:
            if c.index != first.index:
                return torch.zeros(1)
            ref = self.solve(c, teacher, True, count).end
            return torch.sum((fn(self.x_T(c)[:count]).double() - ref.double()) ** 2).reshape(1)
        return math.sqrt(float(self.train.total(sq, 1)[0]) / (count * self.dim))

    def error(self, teacher: Teacher) -> float:
        """The teacher's measured error: RMSE of its end states against the same scheme at 2N on the subset."""
        if teacher not in self.errors:
            first = self.train.chunks[0]
            count = min(CHECK_DRAWS, first.size)
            self.errors[teacher] = self.subset_rmse(lambda x: self.solve(first, teacher, True, count).end,
                                                    teacher.finer())
        return self.errors[teacher]

    def subset_costs(self, teacher: Teacher) -> tuple[np.ndarray, Tensor]:
        """The DP cost matrix along the teacher on the subset alone (as `costs` on the training draws)."""
        first = self.train.chunks[0]
        count = min(CHECK_DRAWS, first.size)
        times = teacher.grid(self.schedule).t[teacher.nodes()]
        m = len(times)

        def sq(c: Chunk) -> Tensor:
            if c.index != first.index:
                return torch.zeros(m * m)
            rec = self.solve(c, teacher, True, count)
            assert rec.path is not None and rec.eps is not None
            return ddim_sq_errors(self.schedule, times, rec.path, rec.eps).reshape(-1)
        return rmse_costs(self.train.total(sq, m * m).reshape(m, m), count * self.dim), times

    def ends(self, seeds: list[int], teacher: Teacher, label: str, n: int | None = None
             ) -> tuple[Pool, dict[int, Batch]]:
        """n draws (default the training n) of other seeds (validation, held-out) with the teacher's end states."""
        key = (tuple(seeds), n, teacher)
        if key not in self.sets:
            pool = self.pool(seeds, n)
            with self.ledger.stage_bar(f"{label} teacher {teacher.solver} N={teacher.nfe}", len(pool.mine), "chunk"):
                data = {c.index: Batch(self.x_T(c), self.solve(c, teacher, False).end) for c in pool.mine}
            self.sets[key] = (pool, data)
        return self.sets[key]

    def costs(self, teacher: Teacher) -> tuple[np.ndarray, Tensor]:
        """(the DP cost matrix along the teacher, the candidate times)."""
        lv = self.level(teacher)
        times = teacher.grid(self.schedule).t[teacher.nodes()]
        if lv.costs is None:
            m = len(times)

            def sq(c: Chunk) -> Tensor:
                rec = lv.records[c.index]
                assert rec.path is not None and rec.eps is not None
                return ddim_sq_errors(self.schedule, times, rec.path, rec.eps).reshape(-1)
            lv.costs = rmse_costs(self.train.total(sq, m * m).reshape(m, m), self.train.draws * self.dim)
        return lv.costs, times
