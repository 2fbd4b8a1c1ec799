"""Running one cell: a registry of cell kinds (how a cell is solved and measured) and shared inputs.

Kind "ode" (deterministic solvers): solve the sampling ODE in the cell's variable from the
problem's x_T on the cell's grid with steps = solver.steps_for(nfe), then measure against the
problem's float64 reference. Other kinds (e.g. "sde" for stochastic solvers, with strong and weak
errors) are added with `register_kind(name, fn)`, fn(cell, inputs) → dict of metrics.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import grids as grids_mod
from .. import problems as problems_mod
from ..dynamics import ode
from ..errors import DiffsolveError, unknown_name
from ..locking import locked, unique_temp
from ..points import make_point
from ..problems import Problem
from ..schedules import SCHEDULES, Schedule
from ..solve import solve
from ..solvers import get_solver
from . import metrics
from .suite import MODEL_SCHEDULE, Cell
from .tuned import tuned_grid

DTYPE = {"float64": torch.float64, "float32": torch.float32}
_STREAM_EXACT_A, _STREAM_EXACT_B = 2, 3


REF_CHECK_FACTOR = 10.0  # the reference's own error: one re-solve at tolerances this many times tighter


class Inputs:
    """Per-sweep cache of what cells share: schedules, x_T, references and exact sample sets.

    With a `cache_dir`, references are also kept on disk, keyed by a hash of the problem's
    fingerprint, the schedule's config, the tolerance and the bytes of x_T, so that a rerun that adds
    cells does not solve them again (they matter for trained networks, where they are slow), and a
    changed network does not reuse them. `progress` shows a bar while a reference is solved.
    """

    def __init__(self, cache_dir: str | Path | None = None, progress: bool = False) -> None:
        self._cache: dict[tuple[Any, ...], Any] = {}
        self.reference_seconds = 0.0
        self.reference_nfe = 0
        self.references: list[dict[str, Any]] = []  # one entry per reference solved here: problem, nfe, seconds, error
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.progress = progress

    def _memo(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def problem(self, cell: Cell) -> Problem:
        return problems_mod.lookup(cell.problem, cell.fingerprint)

    def schedule(self, cell: Cell) -> Schedule:
        if cell.schedule == MODEL_SCHEDULE:
            return self.problem(cell).default_schedule()
        if cell.schedule not in SCHEDULES:
            raise DiffsolveError(unknown_name("schedule", cell.schedule, list(SCHEDULES)))
        return self._memo(("schedule", cell.schedule), SCHEDULES[cell.schedule])

    def x_T(self, cell: Cell) -> Tensor:
        """The cell's starting states (float64, VP coordinates), shared by every solver."""
        return self._memo(("x_T", cell.problem, cell.fingerprint, cell.schedule, cell.n, cell.seed),
                          lambda: self.problem(cell).x_T(cell.n, cell.seed, self.schedule(cell)))

    def _solve_reference(self, cell: Cell) -> tuple[Tensor, float]:
        """(reference at ref_tol, its RMSE to one re-solve REF_CHECK_FACTOR times tighter), with a progress bar
        over the λ range covered (the bar's postfix counts the network evaluations)."""
        prob, sched, x_T = self.problem(cell), self.schedule(cell), self.x_T(cell)
        lam0, lam1 = sched.lambda_min, sched.lambda_max
        nfe = 0
        with tqdm(total=1000, disable=not self.progress, leave=False, dynamic_ncols=True, unit="‰",
                  desc=f"reference {cell.problem} n={cell.n} at rtol {cell.ref_tol:g}",
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}") as bar:
            def on_eval(p: Any) -> None:
                nonlocal nfe
                nfe += 1
                done = round(1000 * (p.lam - lam0) / (lam1 - lam0))
                if done > bar.n:
                    bar.update(done - bar.n)
                if nfe % 20 == 0:
                    bar.set_postfix_str(f"NFE {nfe}")

            # closed-form references (the mixtures) take no on_eval: they are fast
            watch = {"on_eval": on_eval} if "on_eval" in inspect.signature(prob.reference).parameters else {}
            t0 = time.perf_counter()
            ref = prob.reference(x_T, sched, rtol=cell.ref_tol, atol=cell.ref_tol, **watch)
            tight = cell.ref_tol / REF_CHECK_FACTOR
            bar.reset()
            bar.set_description_str(f"its error: re-solve at rtol {tight:g}")
            fine = prob.reference(x_T, sched, rtol=tight, atol=tight, **watch)
            seconds = time.perf_counter() - t0
        self.reference_seconds += seconds
        self.reference_nfe += nfe
        ref_err = metrics.rmse(ref, fine)
        self.references.append({"problem": cell.problem, "schedule": cell.schedule, "n": cell.n, "seed": cell.seed,
                                "ref_tol": cell.ref_tol, "nfe": nfe, "seconds": seconds, "ref_err": ref_err})
        return ref, ref_err

    def reference(self, cell: Cell) -> tuple[Tensor, float]:
        """(reference end state, its own accuracy: RMSE between tolerances ref_tol and ref_tol/REF_CHECK_FACTOR)."""
        def make() -> tuple[Tensor, float]:
            if self.cache_dir is None:
                return self._solve_reference(cell)
            sched, x_T = self.schedule(cell), self.x_T(cell)
            h = hashlib.sha256(f"{cell.fingerprint}|{sched.fingerprint()}|{cell.ref_tol!r}|"
                               f"{REF_CHECK_FACTOR!r}".encode())
            h.update(x_T.detach().cpu().to(torch.float64).contiguous().numpy().tobytes())
            path = self.cache_dir / f"reference-{h.hexdigest()[:32]}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            with locked(path.with_suffix(".lock")):  # one being solved by another process is waited for, then read
                if path.exists():
                    saved = torch.load(path)
                    return saved["ref"], saved["ref_err"]
                ref, ref_err = self._solve_reference(cell)
                tmp = unique_temp(path)  # a name no other process writes
                torch.save({"ref": ref, "ref_err": ref_err}, tmp)
                os.replace(tmp, path)  # atomic: a kill leaves no half-written reference
            return ref, ref_err
        return self._memo(("ref", cell.problem, cell.fingerprint, cell.schedule, cell.n, cell.seed, cell.ref_tol), make)

    def exact_sets(self, cell: Cell) -> tuple[Tensor, Tensor, float] | None:
        """Two independent exact sample sets of p_{t_end} and their SW2 (the floor), or None."""
        prob = self.problem(cell)
        if not prob.has_exact_samples:
            return None

        def make() -> tuple[Tensor, Tensor, float]:
            sched = self.schedule(cell)
            a = prob.samples(cell.n, cell.seed, sched, sched.t_min, stream=_STREAM_EXACT_A)
            b = prob.samples(cell.n, cell.seed, sched, sched.t_min, stream=_STREAM_EXACT_B)
            return a, b, metrics.sliced_w2(a, b, cell.sw2_projections)
        return self._memo(("exact", cell.problem, cell.fingerprint, cell.schedule, cell.n, cell.seed,
                           cell.sw2_projections), make)


CellKind = Callable[[Cell, Inputs], dict[str, Any]]
CELL_KINDS: dict[str, CellKind] = {}


def register_kind(name: str, fn: CellKind) -> None:
    """Add a cell kind: fn(cell, inputs) returns the cell's measured fields (nfe, seconds, metrics…)."""
    if name in CELL_KINDS:
        raise DiffsolveError(f"a cell kind named {name!r} is already registered")
    CELL_KINDS[name] = fn


def solve_cell(cell: Cell, inputs: Inputs, x_T: Tensor) -> tuple[Tensor, int, int | None, float]:
    """Solve the cell's ODE from x_T (VP coords): (x at t_end in VP coords, counted NFE, steps, seconds).

    Fixed-step solvers get steps = solver.steps_for(nfe) on the cell's grid; adaptive ones only the
    end points and their tolerance (steps None).
    """
    sched, solver = inputs.schedule(cell), get_solver(cell.solver)
    model = inputs.problem(cell).model(sched, dtype=DTYPE[cell.dtype])
    options = dict(cell.options)
    if solver.adaptive:  # end points only; the solver chooses its steps at rtol = atol = cell.tol
        steps, grid = None, grids_mod.custom(sched, [sched.t_max, sched.t_min])
        options.update(rtol=cell.tol, atol=cell.tol)
    else:
        spec = grids_mod.parse(cell.grid)
        steps = None if spec.fixed else solver.steps_for(cell.nfe)
        if spec.name == grids_mod.TUNED:  # tuned on training draws for this cell (diffsolve.bench.tuned)
            grid = tuned_grid(cell, inputs, spec)[0]
        else:
            grid = spec.build(sched, steps, fingerprint=inputs.problem(cell).fingerprint())
        steps = grid.steps
        options = {**solver.budget_options(cell.nfe), **options}
    start, end = make_point(sched, grid.t[0]), make_point(sched, grid.t[-1])
    x_user = model.from_vp(x_T.to(DTYPE[cell.dtype]), start)
    dynamics, times = ode(model, cell.variable), []
    for _ in range(cell.repeats):  # the same deterministic solve; its wall time is the median
        t0 = time.perf_counter()
        sol = solve(dynamics, x_user, grid, solver, **options)
        times.append(time.perf_counter() - t0)
    return model.to_vp(sol.x, end).to(torch.float64), sol.nfe, steps, statistics.median(times)


def ode_cell(cell: Cell, inputs: Inputs) -> dict[str, Any]:
    """Deterministic solve measured against the reference (RMSE, relative, worst sample) and exact samples (SW2)."""
    x_T = inputs.x_T(cell)
    ref, ref_err = inputs.reference(cell)
    x, nfe, steps, seconds = solve_cell(cell, inputs, x_T)
    out = {"nfe": nfe, "steps": steps, "seconds": seconds, "rmse": metrics.rmse(x, ref),
           "rel_err": metrics.rel_err(x, ref), "max_err": metrics.max_err(x, ref), "ref_err": ref_err,
           "sw2": None, "sw2_floor": None}
    if cell.grid.partition(":")[0] == grids_mod.TUNED:  # the tuning's cost (memoised: no second tuning)
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
