"""Running one cell: a registry of cell kinds (how a cell is solved and measured).

Kind "ode" (deterministic solvers): solve the cell's plan (diffsolve.plan: the sampling ODE in the cell's
variable on the cell's grid with steps = solver.steps_for(nfe)) from the problem's x_T, then measure against
the problem's float64 reference (diffsolve.bench.inputs). Other kinds (e.g. "sde" for stochastic solvers,
with strong and weak errors) are added with `register_kind(name, fn)`, fn(cell, inputs) → dict of metrics.
"""

from __future__ import annotations

import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .. import grids as grids_mod
from ..errors import DiffsolveError, unknown_name
from ..models import Model
from ..plan import Plan, plan
from ..solve import solve
from . import metrics
from .inputs import DTYPE, Inputs
from .suite import Cell
from .tuned import TUNED, tuned_grid

CellKind = Callable[[Cell, Inputs], dict[str, Any]]
CELL_KINDS: dict[str, CellKind] = {}


def register_kind(name: str, fn: CellKind) -> None:
    """Add a cell kind: fn(cell, inputs) returns the cell's measured fields (nfe, seconds, metrics…)."""
    if name in CELL_KINDS:
        raise DiffsolveError(f"a cell kind named {name!r} is already registered")
    CELL_KINDS[name] = fn


def cell_plan(cell: Cell, inputs: Inputs, model: Model) -> Plan:
    """The cell's plan (diffsolve.plan): its solver at its NFE on its grid in its variable; adaptive solvers get
    rtol = atol = cell.tol; a `tuned` grid is tuned on training draws for this cell (diffsolve.bench.tuned)."""
    options = dict(cell.options)
    if cell.tol is not None:  # adaptive: end points only, the solver chooses its steps
        return plan(model, cell.solver, variable=cell.variable, options={**options, "rtol": cell.tol,
                                                                           "atol": cell.tol})
    spec = grids_mod.parse(cell.grid)
    grid = tuned_grid(cell, inputs, spec)[0] if spec.name == TUNED else spec
    return plan(model, cell.solver, nfe=cell.nfe, grid=grid, variable=cell.variable, options=options,
                fingerprint=inputs.problem(cell).fingerprint())


def solve_cell(cell: Cell, inputs: Inputs, x_T: Tensor) -> tuple[Tensor, int, int | None, float]:
    """Solve the cell's plan from x_T (VP coords): (x at t_end in VP coords, counted NFE, steps, seconds).

    Fixed-step solvers get steps = solver.steps_for(nfe) on the cell's grid; adaptive ones only the
    end points and their tolerance (steps None).
    """
    model = inputs.problem(cell).model(inputs.schedule(cell), dtype=DTYPE[cell.dtype])
    p = cell_plan(cell, inputs, model)
    start, end = p.grid.points[0], p.grid.points[-1]
    x_user = model.from_vp(x_T.to(DTYPE[cell.dtype]), start)
    times = []
    for _ in range(cell.repeats):  # the same deterministic solve; its wall time is the median
        t0 = time.perf_counter()
        sol = solve(p.dynamics, x_user, p.grid, p.solver, **p.options)
        times.append(time.perf_counter() - t0)
    steps = None if p.solver.adaptive else p.grid.steps
    return model.to_vp(sol.x, end).to(torch.float64), sol.nfe, steps, statistics.median(times)


def ode_cell(cell: Cell, inputs: Inputs) -> dict[str, Any]:
    """Deterministic solve measured against the reference (RMSE, relative, worst sample) and exact samples (SW2)."""
    x_T = inputs.x_T(cell)
    ref, ref_err = inputs.reference(cell)
    x, nfe, steps, seconds = solve_cell(cell, inputs, x_T)
    out = {"nfe": nfe, "steps": steps, "seconds": seconds, "rmse": metrics.rmse(x, ref),
           "rel_err": metrics.rel_err(x, ref), "max_err": metrics.max_err(x, ref), "ref_err": ref_err,
           "sw2": None, "sw2_floor": None}
    if cell.grid.partition(":")[0] == TUNED:  # the tuning's cost (memoised: no second tuning)
        out.update(tuned_grid(cell, inputs, grids_mod.parse(cell.grid))[1])
    exact = inputs.exact_sets(cell)
    if exact is not None:
        _, b, floor = exact
        out["sw2"], out["sw2_floor"] = metrics.sliced_w2(x, b, cell.sw2_projections), floor
    return out


register_kind("ode", ode_cell)

RESULT_FIELDS = ("nfe", "steps", "seconds", "rmse", "rel_err", "max_err", "ref_err", "sw2", "sw2_floor")
RECORD_DOC = """\
Each cell record (one JSON object per line of OUT/results.jsonl, and of --json output) holds
the cell's parameters: problem, schedule, solver, options (object), options_label, grid,
variable, nfe_target (the budget; 0 for adaptive solvers), tol (adaptive solvers' rtol = atol,
else null), seed, n, kind, dtype, ref_tol, sw2_projections, params (object), repeats, fingerprint
(the problem's: a hash of its parameters or network weights and schedule config, plus a grid
file's), key (string); the outcome: status ("ok" or "failed"), error (message or null); and the
measurements (null when failed or not applicable): nfe (int, counted by the model), steps
(int; null for adaptive), seconds (float, wall time of the solve, the median of `repeats`
runs), rmse (RMSE per dimension vs the reference), rel_err (‖x − ref‖/‖ref‖), max_err (worst
sample's RMSE), ref_err (the reference's own accuracy), sw2 (sliced W2 to exact samples of
p_t_end), sw2_floor (sliced W2 between two exact sets). A NaN or Inf anywhere is stored as null
and named in nonfinite (object: field → "nan"/"inf"/"-inf"); such a record has status "failed".
Cells on the `tuned` grid also carry the tuning's cost: tune_nfe (model evaluations), tune_seconds
(wall), tune_cpu_seconds, tune_train_error (RMSE on the training draws), tune_start (the grid the
refinement started from) and tune_chosen (start, steps or steps+eval: which won on the validation draws);
a cached tuned grid reports the cost of its original tuning."""


def run_cell(cell: Cell, inputs: Inputs) -> dict[str, Any]:
    """The cell's record: its parameters, status ('ok' or 'failed' with the error) and measurements.

    Any exception but KeyboardInterrupt/SystemExit is caught and recorded, so one bad cell
    (e.g. an NFE below a solver's minimum) does not stop the sweep.
    """
    params = cell.as_dict()
    params["nfe_target"] = params.pop("nfe")
    record: dict[str, Any] = {**params, **dict.fromkeys(RESULT_FIELDS), "status": "ok", "error": None}
    try:
        if cell.kind not in CELL_KINDS:
            raise DiffsolveError(
                unknown_name("cell kind", cell.kind, list(CELL_KINDS))
                + (" (stochastic solvers need an 'sde' kind: register one with "
                   "diffsolve.bench.register_kind)" if cell.kind == "sde" else "")
            )
        record.update(CELL_KINDS[cell.kind](cell, inputs))  # NaN/Inf: the store nulls and names them
    except Exception as e:  # noqa: BLE001 — recorded, the sweep goes on
        record["status"] = "failed"
        record["error"] = f"{type(e).__name__}: {e}"
        if not isinstance(e, DiffsolveError):
            record["traceback"] = traceback.format_exc(limit=4)
    record["key"] = cell.key
    return record
