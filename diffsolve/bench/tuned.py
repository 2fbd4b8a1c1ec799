"""The bench's `tuned` grid spec: each cell tunes its grid on training draws and is measured on its own.

`tuned` (keys n, candidates, max_evals, seed_offset, eval_times: `tuned:n=512`, `tuned:eval_times=0` for step
times alone) tunes the cell's solver, options,
NFE, variable and schedule with diffsolve.tuning.tune on the training seed `cell.seed + seed_offset`
(default 1000, disjoint from every benchmark seed below it) with n draws (default 1024); the cell's own
draws (seed `cell.seed`) are the held-out set, measured as in every other cell. Tuned grids are kept in
`cache_dir/tuned-<hash>.json` (grid files), keyed by the problem's fingerprint, the schedule's config,
solver, options, NFE, variable, teacher tolerance and the tuning parameters, so a rerun does not retune.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from .. import grids as grids_mod
from ..grids import Grid
from ..locking import locked, unique_temp
from ..solvers import get_solver

if TYPE_CHECKING:
    from ..tuning import TunedGrid
    from .inputs import Inputs
    from .suite import Cell

# max_evals 0: the tuner's default; eval_times 1: decoupled evaluation times too where the solver takes them
DEFAULTS = {"n": 1024, "candidates": 64, "max_evals": 0, "seed_offset": 1000, "eval_times": 1}
TUNED = "tuned"
grids_mod.register_deferred(TUNED, tuple(DEFAULTS), "is tuned per benchmark cell (diffsolve bench --grid tuned); "
                            "elsewhere tune one with `diffsolve tune … --out g.json` and pass 'file:g.json'")
COST_FIELDS = ("tune_nfe", "tune_seconds", "tune_cpu_seconds", "tune_train_error", "tune_start", "tune_chosen")


def settings(spec: grids_mod.GridSpec) -> dict[str, int]:
    """The spec's tuning parameters over DEFAULTS, as integers."""
    out = {**DEFAULTS, **{k: int(v) for k, v in spec.params}}
    if out["n"] < 1 or out["candidates"] < 3 or out["max_evals"] < 0 or out["eval_times"] not in (0, 1):
        raise grids_mod.GridError(f"grid spec {spec.text!r}: n >= 1, candidates >= 3, max_evals >= 0, eval_times 0 "
                                  f"or 1 expected; e.g. 'tuned:n=512'")
    return out


def _tune_for(cell: Cell, inputs: Inputs, spec: grids_mod.GridSpec) -> TunedGrid:
    """The cell's tuned grid: tuned now, or read back from the cache dir (schedule and fingerprint checked)."""
    from ..tuning import TunedGrid, tune

    sched, prob, opts = inputs.schedule(cell), inputs.problem(cell), settings(spec)
    solver = get_solver(cell.solver)
    key = json.dumps([prob.fingerprint(), sched.to_config(), solver.name, dict(cell.options), cell.nfe,
                      cell.variable, cell.ref_tol, opts], sort_keys=True, default=str)

    def make() -> TunedGrid:
        return tune(prob, solver.name, cell.nfe, train_seeds=[cell.seed + opts["seed_offset"]], heldout_seeds=None,
                    n=opts["n"], variable=cell.variable, schedule=sched, candidates=opts["candidates"],
                    teacher_tol=max(cell.ref_tol, 1e-10), max_evals=opts["max_evals"] or None,
                    eval_times=bool(opts["eval_times"]) and solver.evaluates_at_nodes, **dict(cell.options))

    if inputs.cache_dir is None:
        return inputs.memo(("tuned", key), make)
    path = inputs.cache_dir / f"tuned-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def read() -> TunedGrid:
        with locked(path.with_suffix(".lock")):  # another process tuning the same grid is waited for
            if not path.exists():
                tmp = unique_temp(path)
                make().save(tmp)
                os.replace(tmp, path)
        return TunedGrid.load(path, sched, prob.fingerprint())
    return inputs.memo(("tuned", key), read)


def tuned_grid(cell: Cell, inputs: Inputs, spec: grids_mod.GridSpec) -> tuple[Grid, dict[str, Any]]:
    """(the cell's tuned grid, its cost fields for the record: tuning NFE, seconds, CPU seconds, training error)."""
    tuned = _tune_for(cell, inputs, spec)
    grid = Grid(tuned.grid.schedule, tuned.grid.t, spec.text, tuned.grid.t_eval)
    cost = {"tune_nfe": tuned.cost_nfe, "tune_seconds": tuned.cost_seconds, "tune_cpu_seconds": tuned.cost_cpu_seconds,
            "tune_train_error": tuned.train_error, "tune_start": tuned.start, "tune_chosen": tuned.chosen}
    return grid, cost
