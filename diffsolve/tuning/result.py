"""A tuned grid with what it was tuned for, what it reached and what it cost: a grid file (docs/design.md §8)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import grids as grids_mod
from ..errors import DiffsolveError, GridError
from ..grids import Grid
from ..plan import own_variable
from ..schedules import Schedule, from_config


@dataclass
class TunedGrid:
    """A tuned grid, its errors (RMSE per dimension to the teacher; held-out: median and 90th percentile of the
    per-sample relative error too) and its cost (model calls; sample-evaluations = calls × batch, forward and
    backward); `save`/`load` as JSON."""

    grid: Grid
    solver: str
    options: dict[str, Any]
    nfe: int
    variable: str
    problem: str
    fingerprint: str
    train_error: float
    heldout_error: float | None
    start: str  # which grid the refinement started from ("dp" or a standard grid's name)
    start_train_error: float
    start_heldout_error: float | None
    cost_nfe: int  # model calls (every rank), teacher included
    cost_seconds: float
    cost_cpu_seconds: float = 0.0
    method: str = "dp+refine"
    optimizer: str = "lbfgs"
    decoupled: bool = False  # the grid carries decoupled evaluation times (grid.t_eval)
    chosen: str = ""  # which stage won on the validation draws: "start", "steps" or "steps+eval"
    validation_error: float | None = None
    validation_seeds: list[int] = field(default_factory=list)
    n: int = 0
    train_seeds: list[int] = field(default_factory=list)
    heldout_seeds: list[int] = field(default_factory=list)
    gradient: str = ""  # "autograd" (one backward pass per gradient) or "fd" (finite differences)
    objective: str = "mean"
    cost_samples: int = 0  # forward sample-evaluations (model calls × batch), teacher and validation included
    cost_vjp_samples: int = 0  # backward sample-evaluations (one vector-Jacobian product per forward call)
    cost_by_stage: dict[str, int] = field(default_factory=dict)  # forward sample-evaluations per stage
    cpu_by_stage: dict[str, float] = field(default_factory=dict)  # CPU seconds per stage (this process)
    shared_cost: bool = False  # teacher and DP shared with other NFEs of one call (their cost is counted in each)
    teacher: dict[str, Any] = field(default_factory=dict)  # solver, options, grid, NFE, measured error
    heldout_median: float | None = None  # of the per-sample relative error ‖x − x*‖/‖x*‖
    heldout_p90: float | None = None
    stopped: str = ""  # why the refinement stopped early ("max_seconds"), else ""
    evals: int = 0  # objective (and gradient) evaluations of the refinement
    estimated_samples: int = 0  # forward sample-evaluations expected before the work (every NFE of the call)

    def extra(self) -> dict[str, Any]:
        """The grid file's fields beside times and schedule: solver, options, NFE, fingerprint, errors, cost."""
        d = {k: v for k, v in asdict(self).items() if k != "grid"}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}

    def save(self, path: str | Path) -> Path:
        """Write the grid file (diffsolve.grids format): `file:PATH` then loads wherever a grid is accepted."""
        return grids_mod.save(self.grid, path, kind="tuned", **self.extra())

    @classmethod
    def load(cls, path: str | Path, schedule: Schedule | None = None, fingerprint: str | None = None) -> TunedGrid:
        """Read a tuned grid file; refuse it when `schedule` or the problem `fingerprint` differ from the file's."""
        data = grids_mod.read_file(path)
        grids_mod.check_file(data, path, schedule, fingerprint)
        known = {f.name for f in fields(cls)} - {"grid"}
        missing = sorted(k for k in ("solver", "nfe", "train_error") if k not in data)
        if missing:
            raise GridError(f"grid file {str(path)!r} is a plain grid, not a tuned one (no {', '.join(missing)}); "
                            f"use it as 'file:{path}', or write a tuned grid with diffsolve tune")
        defaults = {"options": {}, "problem": "", "fingerprint": "", "heldout_error": None,
                    "start": "", "start_train_error": math.nan, "start_heldout_error": None, "cost_nfe": 0,
                    "cost_seconds": 0.0}
        values = {**defaults, **{k: v for k, v in data.items() if k in known}}
        if "variable" not in values:  # written before files named it: the variable the solver steps in
            values["variable"] = own_variable(values["solver"], values["options"])
        try:
            sched = from_config(data["schedule"])
        except (KeyError, TypeError, ValueError, DiffsolveError) as e:
            raise GridError(f"grid file {str(path)!r}: its schedule {data['schedule']!r} cannot be built ({e}); "
                            f"write it with diffsolve tune") from None
        return cls(grid=Grid(sched, data["times"], "tuned", grids_mod.eval_times_of(data, path)), **values)
