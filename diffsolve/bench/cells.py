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
from ..solvers.learned import is_file_spec
from . import metrics
from .data import DATA_FIELDS
from .inputs import DTYPE, Inputs
from .learned import learned_solver, learning_cost
from .specs import LEARNED, TUNED
from .suite import Cell
from .tuned import tuned_grid

CellKind = Callable[[Cell, Inputs], dict[str, Any]]
CellPrepare = Callable[[Cell, Inputs], None]
CELL_KINDS: dict[str, CellKind] = {}
PREPARE: dict[str, CellPrepare] = {}


def register_kind(name: str, fn: CellKind, prepare: CellPrepare | None = None) -> None:
    """Add a cell kind: fn(cell, inputs) returns the cell's measured fields (nfe, seconds, metrics…); prepare(cell,
    inputs), if given, builds what the kind's cells share (references…) in `inputs` before the first cell runs."""
    if name in CELL_KINDS:
        raise DiffsolveError(f"a cell kind named {name!r} is already registered")
    CELL_KINDS[name] = fn
    if prepare is not None:
        PREPARE[name] = prepare


def prepare_cells(cells: list[Cell], inputs: Inputs) -> None:
    """Build what the cells share (each kind's `prepare`: references first) before any cell is run, so that the
    sweep's progress bar times cells, not the references they wait for. A failure here is left to the cells, which
    record it."""
    for cell in cells:
        prepare = PREPARE.get(cell.kind)
        try:
            if prepare is not None:
                prepare(cell, inputs)
        except Exception:  # noqa: BLE001 — the cell raises it again and records it
            continue


def cell_plan(cell: Cell, inputs: Inputs, model: Model) -> Plan:
    """The cell's plan (diffsolve.plan): its solver at its NFE on its grid in its variable; adaptive solvers get
    rtol = atol = cell.tol; a `tuned` grid is tuned on training draws for this cell (diffsolve.bench.tuned), a
    `learned` one runs the solver learned for it on its grid (diffsolve.bench.learned)."""
    options = dict(cell.options)
    if cell.tol is not None:  # adaptive: end points only, the solver chooses its steps
        return plan(model, cell.solver, variable=cell.variable, options={**options, "rtol": cell.tol,
                                                                           "atol": cell.tol})
    fingerprint = inputs.problem(cell).fingerprint()
    if is_file_spec(cell.solver):  # a learned solver's file brings its grid (checked again: it may have changed)
        return plan(model, cell.solver, nfe=cell.nfe, variable=cell.variable, options=options, fingerprint=fingerprint)
    spec = grids_mod.parse(cell.grid)
    if spec.name == LEARNED:  # the solver learned for this cell brings its grid
        return plan(model, learned_solver(cell, inputs, spec), nfe=cell.nfe, variable=cell.variable, options=options,
                    fingerprint=fingerprint)
    grid = tuned_grid(cell, inputs, spec)[0] if spec.name == TUNED else spec
    return plan(model, cell.solver, nfe=cell.nfe, grid=grid, variable=cell.variable, options=options,
                fingerprint=fingerprint)


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


def reference_errors(cell: Cell, inputs: Inputs, x: Tensor, ref: Tensor) -> dict[str, Any]:
    """x (VP coordinates at t_end) against its reference: RMSE, relative error, the per-sample errors' maximum,
    median and 90th percentile, and, for problems that know their modes, how many samples end in another one."""
    prob, sched = inputs.problem(cell), inputs.schedule(cell)
    median, p90 = metrics.err_quantiles(x, ref, (0.5, 0.9))
    labels = prob.component_of(x, sched, sched.t_min)
    flips = None if labels is None else metrics.flips(labels, prob.component_of(ref, sched, sched.t_min))
    return {"rmse": metrics.rmse(x, ref), "rel_err": metrics.rel_err(x, ref), "max_err": metrics.max_err(x, ref),
            "err_median": median, "err_p90": p90, "flips": flips}


def data_fields(cell: Cell, inputs: Inputs, x: Tensor) -> dict[str, Any]:
    """x (VP coordinates at t_end) against the user's data in data coordinates x/α(t_end) (diffsolve.bench.data);
    {} for a cell without data."""
    stick = inputs.yardstick(cell)
    return {} if stick is None else stick.measure(x / inputs.end_alpha(cell))


def ode_cell(cell: Cell, inputs: Inputs) -> dict[str, Any]:
    """Deterministic solve measured against the reference (RMSE, relative, per-sample quantiles, worst sample, mode
    flips), exact samples (SW2) and the user's data (SW2, MMD², FD)."""
    x_T = inputs.x_T(cell)
    ref, ref_err = inputs.reference(cell)
    x, nfe, steps, seconds = solve_cell(cell, inputs, x_T)
    out = {"nfe": nfe, "steps": steps, "seconds": seconds, **reference_errors(cell, inputs, x, ref),
           "ref_err": ref_err, "sw2": None, "sw2_floor": None, **data_fields(cell, inputs, x)}
    out.update(training_cost(cell, inputs))
    exact = inputs.exact_sets(cell)
    if exact is not None:
        _, b, floor = exact
        out["sw2"], out["sw2_floor"] = metrics.sliced_w2(x, b, cell.sw2_projections), floor
    return out


def training_cost(cell: Cell, inputs: Inputs) -> dict[str, Any]:
    """A `tuned` or `learned` cell's training cost fields (memoised: no second tuning or learning); {} for others."""
    if is_file_spec(cell.solver) or cell.grid.partition(":")[0] not in (TUNED, LEARNED):
        return {}
    spec = grids_mod.parse(cell.grid)
    if spec.name == TUNED:
        return tuned_grid(cell, inputs, spec)[1]
    return learning_cost(learned_solver(cell, inputs, spec))


def prepare_ode(cell: Cell, inputs: Inputs) -> None:
    """What the 'ode' cells of one problem share, built once: the reference, the exact sample sets, the data's
    yardstick."""
    inputs.reference(cell)
    inputs.exact_sets(cell)
    inputs.yardstick(cell)


register_kind("ode", ode_cell, prepare_ode)

RESULT_FIELDS = ("nfe", "steps", "seconds", "rmse", "rel_err", "max_err", "err_median", "err_p90", "flips", "ref_err",
                 "sw2", "sw2_floor", *DATA_FIELDS)
RECORD_DOC = """\
Each cell record (one JSON object per line of OUT/results.jsonl, and of --json output) holds
the cell's parameters: problem, schedule, solver, options (object), options_label, grid,
variable, nfe_target (the budget; 0 for adaptive solvers), tol (adaptive solvers' rtol = atol,
else null), seed, n, kind, dtype, ref_tol, sw2_projections, params (object), repeats, fingerprint
(the problem's: a hash of its parameters or network weights and schedule config, plus a grid
file's), data (a hash of the user's data samples, "" without), features (the feature network's
fingerprint, "" without), label (the solver as the tables show it: "learned-ipndm (l.json)" for a
learned solver's file, whose cells have grid "learned"; "" for others), key (string; parameters at
their default are left out of it, so records stored before a parameter existed keep their keys); the
outcome: status ("ok" or "failed"), error (message or null); and the measurements (null when failed or
not applicable; records stored before a measurement existed lack it): nfe (int, counted by the model),
steps (int; null for adaptive),
seconds (float, wall time of the solve, the median of `repeats` runs), rmse (RMSE per dimension vs
the reference), rel_err (‖x − ref‖/‖ref‖), max_err, err_median and err_p90 (the maximum, median and
90th percentile over samples of each sample's RMSE per dimension vs its reference), flips (int: samples
whose most likely mixture component at t_end differs from their reference's; null for problems
without known modes), ref_err (the reference's own accuracy), sw2 (sliced W2 to exact samples of
p_t_end), sw2_floor (sliced W2 between two exact sets). With data (diffsolve.bench.data; samples
compared in data coordinates x/α(t_end)): data_n (the cell's samples compared, m = min(n, N − ⌊N/2⌋)),
data_sw2 (sliced W2 to a reference half of the data), data_mmd2 (unbiased MMD², Gaussian kernel of
median-heuristic bandwidth from the data; may be < 0), data_fd (Fréchet distance of Gaussian fits in
the feature space; null without features), each beside its floor data_*_floor (the same statistic for
m other data samples over 8 half splits: the mean for SW2 and FD, the RMS for MMD²). A NaN or Inf
anywhere is stored as null and named in nonfinite (object: field → "nan"/"inf"/"-inf"); such a record
has status "failed".
Cells on the `tuned` grid also carry the tuning's cost: tune_nfe (model evaluations), tune_seconds
(wall), tune_cpu_seconds, tune_train_error (RMSE on the training draws), tune_start (the grid the
refinement started from) and tune_chosen (start, steps or steps+eval: which won on the validation draws);
a cached tuned grid reports the cost of its original tuning. Cells on the `learned` grid (a solver learned
per cell: its grid and weights) carry the learning's cost in the same fields, its grid stages included:
tune_nfe, tune_seconds, tune_cpu_seconds, tune_train_error (the chosen solver's error on the training
draws), tune_start, and tune_chosen ("weights" when validation chose the learned weights, else the stage
of the tuned grid it started from, which then runs with the method's own weights)."""


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
