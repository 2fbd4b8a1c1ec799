"""The teacher: a high-NFE diffsolve solve in the network's dtype, its error measured, its trajectories cached on disk.

A teacher is one of two schemes — UniPC of order 3 on a grid uniform in λ, or ipndm_v of order 4 on a grid uniform in
√t, one network call per node each — at N = N_0·2^L steps (level L; N_0 = candidates − 1 by default, so that its
nodes hold the M = candidates DP candidates every 2^L steps). Measured on the repository's problems, each is 10× the
more accurate on some of them (ipndm_v on the mixtures, UniPC on a diffusers UNet with a discrete DDPM table), so
tune() measures both on a subset and takes the cheaper one that is accurate enough. On the training draws the
teacher's states and ε (from x̂0 for UniPC) at the candidates are recorded as it runs, so the DP's cost matrix needs
no further call. Its error is the RMSE of its end states against the same scheme at 2N on a subset (the first
chunk's first draws). Each chunk's teacher is cached in `cache_dir` under a hash of the problem's fingerprint, the
schedule, the chunk's seed and draws, the teacher's settings, the dtype and the device type: reused across solvers,
NFEs and runs; a weight change misses the cache.
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
from ..solvers import get_solver
from ..solvers.exp.threshold import Prediction
from ..solvers.exp.weighted import solve_weighted

# (solver, options, grid) of each scheme, in the order preferred at equal cost
SCHEMES: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("unipc", {"order": 3, "lower_order_final": False}, "logsnr"),
    ("ipndm_v", {"order": 4}, "quadratic"),
)
CHECK_DRAWS = 16  # draws of the subset that measures the teachers' errors (both schemes, up to 3 levels)
CACHE_ENV = "DIFFSOLVE_CACHE"


@dataclass(frozen=True)
class Teacher:
    """The teacher's settings: scheme (an index into SCHEMES), N steps, M candidate nodes recorded."""

    nfe: int
    candidates: int
    scheme: int = 0

    @property
    def solver(self) -> str:
        return SCHEMES[self.scheme][0]

    @property
    def options(self) -> dict[str, Any]:
        return dict(SCHEMES[self.scheme][1])

    def grid(self, schedule: Schedule) -> Grid:
        return grids_mod.make(SCHEMES[self.scheme][2], schedule, self.nfe)

    def nodes(self) -> list[int]:
        """The candidate nodes: round(i·N/(M − 1)), i = 0…M − 1 (distinct)."""
        m = self.candidates
        return sorted({round(i * self.nfe / (m - 1)) for i in range(m)})

    def finer(self) -> Teacher:
        """The same scheme at twice the steps (the next level: its candidates at the same times)."""
        return Teacher(2 * self.nfe, self.candidates, self.scheme)

    def settings(self) -> dict[str, Any]:
        return {"solver": self.solver, "options": self.options, "grid": SCHEMES[self.scheme][2], "nfe": self.nfe,
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
    data_form = get_solver(teacher.solver).form_of(teacher.options) == "data"
    states: list[Tensor] = []
    outputs: list[Tensor] = []

    def capture(fn: Prediction) -> Prediction:
        calls = [0]

        def call(x_i: Tensor, p: Point) -> Tensor:
            m = fn(x_i, p)  # at the state it evaluates (for UniPC, before that state's correction)
            if calls[0] in keep:  # the loop never writes into its states or outputs: references suffice
                states.append(x_i)
                outputs.append((x_i - p.alpha * m) * (1.0 / p.sigma) if data_form else m)  # ε = (x − α x̂0)/σ
            calls[0] += 1
            return m
        return call

    with torch.no_grad():
        end = solve_weighted(ode(model, "lambda"), x, grid.points, teacher.solver, wrap=capture, **teacher.options)
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
