"""The teacher: a high-NFE diffsolve solve in the network's dtype, its error measured, its trajectories cached on disk.

The teacher is ipndm_v of order 4 (variable-step Adams–Bashforth in σ̄, one network call per node) on a grid
uniform in √t with N steps (default 2·(M − 1) for M DP candidates). On the training draws its states and ε at the M
candidate nodes round(i·N/(M − 1)) are recorded as it runs, so the DP's cost matrix needs no further call. Its own
error is the RMSE of its end state against the same solve at 2N steps on a subset (the first chunk's first draws);
tune() holds it to ≤ 0.1× the training error reached (or to teacher_tol). Each chunk's teacher is cached in
`cache_dir` under a hash of the problem's fingerprint, the schedule, the chunk's seed and draws, the teacher's
settings, the dtype and the device type: reused across solvers, NFEs and runs; a weight change misses the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import grids as grids_mod
from ..dynamics import ode
from ..grids import Grid
from ..locking import unique_temp
from ..models import Model
from ..points import Point
from ..schedules import Schedule
from ..solvers.exp.threshold import Prediction
from ..solvers.exp.weighted import solve_weighted

SOLVER, OPTIONS, GRID = "ipndm_v", {"order": 4}, "quadratic"
CHECK_DRAWS = 32  # draws of the subset that measures the teacher's error
CACHE_ENV = "DIFFSOLVE_CACHE"


@dataclass(frozen=True)
class Teacher:
    """The teacher's settings: N steps, M candidate nodes recorded on the training draws."""

    nfe: int
    candidates: int

    def grid(self, schedule: Schedule) -> Grid:
        return grids_mod.make(GRID, schedule, self.nfe)

    def nodes(self) -> list[int]:
        """The candidate nodes: round(i·N/(M − 1)), i = 0…M − 1 (distinct)."""
        m = self.candidates
        return sorted({round(i * self.nfe / (m - 1)) for i in range(m)})

    def finer(self) -> Teacher:
        """The same teacher at twice the steps (its candidate nodes at the same times)."""
        return Teacher(2 * self.nfe, self.candidates)

    def settings(self) -> dict[str, Any]:
        return {"solver": SOLVER, "options": dict(OPTIONS), "grid": GRID, "nfe": self.nfe,
                "candidates": self.candidates}


@dataclass
class Record:
    """One chunk's teacher: its end states and, on training draws, its states and ε at the candidate nodes."""

    end: Tensor
    path: Tensor | None = None  # (M, b, …), path[-1] = end
    eps: Tensor | None = None  # (M − 1, b, …)


def default_cache_dir() -> Path:
    """$DIFFSOLVE_CACHE/teachers, else $XDG_CACHE_HOME (or ~/.cache)/diffsolve/teachers."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "diffsolve")
    return Path(root) / "teachers"


def solve_teacher(model: Model, teacher: Teacher, x: Tensor, record: bool) -> Record:
    """The teacher from x (the model's coordinates, the network's dtype): its end states, and with `record` its
    states (VP coordinates) and ε at the candidate nodes, captured as it calls the network (no extra call)."""
    grid = teacher.grid(model.schedule)
    keep = set(teacher.nodes()[:-1]) if record else set()
    states: list[Tensor] = []
    outputs: list[Tensor] = []

    def capture(fn: Prediction) -> Prediction:
        calls = [0]

        def call(x_i: Tensor, p: Point) -> Tensor:
            m = fn(x_i, p)
            if calls[0] in keep:  # the loop never writes into its states or outputs: references suffice
                states.append(x_i)
                outputs.append(m)
            calls[0] += 1
            return m
        return call

    with torch.no_grad():
        end = solve_weighted(ode(model, "sigma"), x, grid.points, SOLVER, wrap=capture, **OPTIONS)
    if not record:
        return Record(end)
    return Record(end, torch.stack(states + [model.to_vp(end, grid.points[-1])]), torch.stack(outputs))


class TeacherCache:
    """Chunk teachers on disk (None: no cache), keyed by value."""

    def __init__(self, folder: Path | None, identity: dict[str, Any]):
        self.folder, self.identity = folder, identity

    def path(self, key: dict[str, Any]) -> Path | None:
        if self.folder is None:
            return None
        text = json.dumps({**self.identity, **key}, sort_keys=True, default=str)
        return self.folder / f"teacher-{hashlib.sha256(text.encode()).hexdigest()[:32]}.pt"

    def get(self, key: dict[str, Any], make: Callable[[], Record]) -> tuple[Record, bool]:
        """(the record, whether it was computed now): read from the cache, else made and written."""
        path = self.path(key)
        if path is not None and path.exists():
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
                return Record(data["end"], data.get("path"), data.get("eps")), False
            except Exception as e:  # noqa: BLE001 — a damaged file is solved again
                warnings.warn(f"cached teacher {path} is damaged ({type(e).__name__}); solving it again",
                              stacklevel=2)
        rec = make()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = unique_temp(path)
            torch.save({"end": rec.end.cpu(), "path": None if rec.path is None else rec.path.cpu(),
                        "eps": None if rec.eps is None else rec.eps.cpu()}, tmp)
            os.replace(tmp, path)
        return rec, True
