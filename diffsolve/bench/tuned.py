"""The bench's `tuned` grid spec: each cell tunes its grid on training draws and is measured on its own.

`tuned` (keys n, candidates, max_evals, seed_offset, eval_times: `tuned:n=512`, `tuned:eval_times=0` for step
times alone; diffsolve.bench.specs) tunes the cell's solver, options, NFE, variable and schedule with
diffsolve.tuning.tune on the training seed `cell.seed + seed_offset` (default 1000, disjoint from every benchmark
seed below it) with n draws (default: tune's own, 256); the cell's own draws (seed `cell.seed`) are the held-out set,
measured as in every other cell. Tuned grids are kept in `cache_dir/tuned-<hash>.json` (grid files; Inputs.trained),
keyed by the problem's fingerprint, the schedule's config, solver, options, NFE, variable and the tuning parameters,
so a rerun does not retune; the tuner's teachers in `cache_dir/teachers`. `training_key` and `training_args` are
shared with the `learned` spec (diffsolve.bench.learned).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .. import grids as grids_mod
from ..grids import Grid
from ..solvers import get_solver
from .specs import TUNED, settings

if TYPE_CHECKING:
    from ..tuning import TunedGrid
    from .inputs import Inputs
    from .suite import Cell

COST_FIELDS = ("tune_nfe", "tune_seconds", "tune_cpu_seconds", "tune_train_error", "tune_start", "tune_chosen")


def training_key(cell: Cell, inputs: Inputs, opts: dict[str, int], version: str) -> str:
    """What a cell's training depends on, as a string of values: the problem's fingerprint, the schedule's config,
    solver, options, NFE, variable, the spec's parameters and the trainer's `version`."""
    sched, prob = inputs.schedule(cell), inputs.problem(cell)
    return json.dumps([prob.fingerprint(), sched.to_config(), get_solver(cell.solver).name, dict(cell.options),
                       cell.nfe, cell.variable, opts, version], sort_keys=True, default=str)


def training_args(cell: Cell, inputs: Inputs, opts: dict[str, int]) -> dict[str, Any]:
    """The keyword arguments of tune / learn for a cell (after problem, solver, NFE): its training seed, draws,
    variable, schedule, the spec's parameters, the teachers' cache and the cell's solver options; no held-out draws
    (the cell's own are)."""
    solver = get_solver(cell.solver)
    return {"train_seeds": [cell.seed + opts["seed_offset"]], "heldout_seeds": None, "n": opts["n"],
            "variable": cell.variable, "schedule": inputs.schedule(cell), "candidates": opts["candidates"],
            "max_evals": opts["max_evals"] or None, "progress": False,
            "cache_dir": False if inputs.cache_dir is None else inputs.cache_dir / "teachers",
            "eval_times": bool(opts["eval_times"]) and solver.evaluates_at_nodes, **dict(cell.options)}


def _tune_for(cell: Cell, inputs: Inputs, spec: grids_mod.GridSpec) -> TunedGrid:
    """The cell's tuned grid: tuned now, or read back from the cache dir (schedule and fingerprint checked)."""
    from ..tuning import TunedGrid, tune

    opts, prob = settings(spec), inputs.problem(cell)
    return inputs.trained(
        TUNED, training_key(cell, inputs, opts, "tuner-2"),
        lambda: tune(prob, get_solver(cell.solver).name, cell.nfe, **training_args(cell, inputs, opts)),
        lambda path: TunedGrid.load(path, inputs.schedule(cell), prob.fingerprint()))


def tuned_grid(cell: Cell, inputs: Inputs, spec: grids_mod.GridSpec) -> tuple[Grid, dict[str, Any]]:
    """(the cell's tuned grid, its cost fields for the record: tuning NFE, seconds, CPU seconds, training error)."""
    tuned = _tune_for(cell, inputs, spec)
    grid = Grid(tuned.grid.schedule, tuned.grid.t, spec.text, tuned.grid.t_eval)
    cost = {"tune_nfe": tuned.cost_nfe, "tune_seconds": tuned.cost_seconds, "tune_cpu_seconds": tuned.cost_cpu_seconds,
            "tune_train_error": tuned.train_error, "tune_start": tuned.start, "tune_chosen": tuned.chosen}
    return grid, cost
