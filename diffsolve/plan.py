"""The cell plan: (model, solver spec, budget, grid spec, variable) → what is solved, in one place.

Every caller that turns "this solver at this NFE on this grid" into a solve — `ds.sample`, the bench's ODE
and SDE cells, tuning, `diffsolve sample` and the exporters — goes through `plan()`, so they agree on:
- the solver's options: the budget's own (`solver.budget_options(nfe)`, e.g. a singlestep pattern) under
  the caller's, and `end="zero"` as the solver's `to_zero` step (which counts against the budget);
- the grid: a Grid (checked against the schedule), a spec built with `solver.steps_for(nfe)` steps, or a spec
  with its own times (custom, file: checked against the schedule and, when known, the problem's fingerprint);
  adaptive solvers get the end points only; at most MAX_STEPS steps;
- the dynamics the solver declares (`dynamics_for`): the reverse SDE for stochastic solvers (in t), else the
  sampling ODE in `variable` (default: the one variable the solver steps in, λ for exponential integrators,
  σ̄ otherwise).
With no solver, the measured table DEFAULT_CONFIGS picks solver, grid and options for the budget; a community name
("DPM++ 2M Karras", "Euler a", …; diffsolve.presets) picks the named sampler's solver, grid, options and end; a
learned solver ("file:learned.json" or a LearnedSolver; diffsolve.solvers.learned) brings its weights, grid (with
evaluation times), options and end, and is refused for another schedule, problem fingerprint or network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import grids as grids_mod
from .checks import Option
from .dynamics import VPSDE, Dynamics, ode
from .errors import DiffsolveError, GridError, SolverError
from .grids import MAX_STEPS, Grid  # noqa: F401 — MAX_STEPS lives in grids (every grid is bounded there)
from .models import Model
from .presets import is_name
from .presets import resolve as resolve_name
from .solvers import SOLVERS, get_solver
from .solvers.base import Solver
from .solvers.learned import LearnedSolver, is_file_spec, load_spec

# The configuration when no solver is given: the first entry whose NFE bound covers the budget.
# Chosen by measurement (benchmarks/defaults.py, benchmarks/RESULTS.md "The default of sample()"): per NFE, the
# configuration with the smallest geometric mean over gmm-64, gmm-2d, toy-2d and digits-8x8 of (its relative error /
# the best one's), on a SELECTION draw set, among 22 untuned configurations (dpmpp2m, dpmpp3m, unipc bh1/bh2, deis,
# ipndm 2–4, ipndm_v, dpmpp2s, dpm3, heun, rk3, rk4) on the logsnr, time, quadratic and karras grids; confirmed on a
# disjoint REPORT set. (max NFE, solver, grid, options); no tuning at call time. Measured at NFE 4, 5, 6, 7, 8, 10,
# 12, 15, 20; NFE 1–3, 9, 11, 13–14 and 16–19 follow the next measured NFE up, NFE > 20 the NFE-20 choice, unmeasured.
DEFAULT_CONFIGS: tuple[tuple[float, str, str, dict[str, Any]], ...] = (
    (4, "dpmpp2m", "quadratic", {"lower_order_final": True}),
    (5, "unipc", "quadratic", {"lower_order_final": True, "variant": "bh2"}),
    (7, "ipndm", "quadratic", {"order": 2}),
    (15, "ipndm", "quadratic", {"order": 3}),
    (float("inf"), "unipc", "quadratic", {"lower_order_final": True, "variant": "bh2"}),
)
PROBE_STEPS = 64  # plan(probe=True) builds a named grid with at most this many steps (its parameters are checked alike)
ENDS = ("sigma_min", "zero")  # where sampling ends: the grid's last time, or σ = 0 (one more, first-order step)
DEFAULT_GRID = "logsnr"


@dataclass(frozen=True)
class Plan:
    """One solve: `solver` integrates `dynamics` over `grid` with `options` (the budget's included)."""

    solver: Solver
    dynamics: Dynamics
    grid: Grid
    options: dict[str, Any] = field(default_factory=dict)
    nfe: int | None = None  # the budget asked for (None: steps, a grid's own times, or an adaptive solver)

    @property
    def steps(self) -> int:
        """The grid's step count."""
        return self.grid.steps


def default_config(budget: int) -> tuple[str, str, dict[str, Any]]:
    """(solver, grid, options) used at this NFE (or step count) when no solver is given."""
    for bound, solver, grid, options in DEFAULT_CONFIGS:
        if budget <= bound:
            return solver, grid, dict(options)
    raise GridError(f"no default configuration for nfe={budget}; pass solver=")


BUDGETS = {label: Option(label, "int", low=1, optional=True) for label in ("nfe", "steps")}


def _budget(label: str, value: Any) -> int | None:
    """An NFE budget or step count as an int (any integer type: Python's, numpy's, a 0-d integer tensor's item), or
    None; the validation layer's GridError otherwise."""
    return BUDGETS[label].check(value, fix=f"pass e.g. {label}=20", error=GridError)


def _named(model: Model, name: str, nfe: int | None, steps: int | None, grid: Any, options: dict[str, Any],
           end: str | None, variable: str | None) -> tuple[str, Grid, dict[str, Any], str, str | None]:
    """(solver, grid, options, end, variable) of a community name at an NFE budget (diffsolve.presets); the name fixes
    the grid, the end and the variable it names, the caller's options go over the name's."""
    whole = SolverError(f"{name!r} names a whole sampler (solver, grid, end point and variable); give it nfe= alone, "
                        f"or give its solver {resolve_name(name).solver!r} with your own grid=, end= and variable=")
    if nfe is None or steps is not None or grid is not None or end is not None:
        raise whole
    row = resolve_name(name)
    try:
        config = row.config(model.schedule, nfe)
    except DiffsolveError as e:  # say how the name was read: 'Heun' is a whole sampler, heun a solver
        raise type(e)(f"solver {name!r} was read as the community sampler name {row.name!r} (solver {row.solver!r} "
                      f"on {row.grid.describe()}, ending at {row.end!r}): {e}; for the solver alone, write "
                      f"solver={row.solver!r}") from e
    if config.variable is not None and variable not in (None, config.variable):
        raise whole
    return config.solver, config.grid, {**config.options, **options}, config.end, config.variable or variable


def _learned(model: Model, spec: str | LearnedSolver, nfe: int | None, steps: int | None, grid: Any, end: str | None,
             fingerprint: str | None) -> LearnedSolver:
    """The learned solver of a file or object, checked against the model's schedule, the problem's fingerprint (when
    known) and the network's weights; it fixes its grid and end, so only a matching nfe= may be given."""
    learned = load_spec(spec, model.schedule, fingerprint, model.net)
    shown = spec if isinstance(spec, str) else "this learned solver"
    if steps is not None or grid is not None or end is not None:
        raise SolverError(f"{shown!r} brings its own grid ({learned.grid.steps} steps) and end ({learned.end!r}); "
                          f"drop steps=, grid= and end= (or give nfe={learned.nfe} alone)")
    if nfe is not None and nfe != learned.nfe:
        raise SolverError(f"{shown!r} was learned for nfe={learned.nfe}, not nfe={nfe}; give nfe={learned.nfe} (or "
                          f"leave it out), or learn one for nfe={nfe}")
    return learned


def _end_options(method: Solver, end: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """`end="zero"` as the solver's to_zero option; "sigma_min" (the default) leaves the options alone."""
    if end is None or end == "sigma_min":
        return options
    if end != "zero":
        raise GridError(f"end must be one of {', '.join(map(repr, ENDS))}, got {end!r}: 'sigma_min' ends at the grid's "
                        f"last time (k-diffusion's and diffsolve's default), 'zero' adds a step to σ = 0 (diffusers')")
    if "to_zero" not in method.options:
        takes = sorted(name for name, s in SOLVERS.items() if "to_zero" in s.options)
        raise SolverError(f"solver {method.name!r} cannot end at σ = 0 (end='zero'); solvers that can: {takes}. Or "
                          f"leave end out to stop at the grid's last time")
    if options.get("to_zero") is False:
        raise SolverError("end='zero' and to_zero=False contradict each other; give one of them")
    return {**options, "to_zero": True}


def _grid_for(method: Solver, model: Model, grid: str | Grid, nfe: int | None, steps: int | None,
              options: dict[str, Any], fingerprint: str | None, probe: bool = False) -> tuple[Grid, dict[str, Any]]:
    """(the grid, the options with the budget's own) for a fixed-step solver, or the end points for an adaptive one;
    `probe`: a named grid is built with at most PROBE_STEPS steps (every check made, little work)."""
    sched = model.schedule
    if method.adaptive:
        if nfe is not None or steps is not None:
            raise SolverError(f"solver {method.name!r} is adaptive: it picks its own steps; give rtol=/atol= "
                              f"instead of nfe={nfe}, steps={steps}")
        return grids_mod.custom(sched, [sched.t_max, sched.t_min]), options
    own_times = isinstance(grid, Grid) or grids_mod.parse(grid).fixed
    if own_times and nfe is None and steps is None:
        return grids_mod.build(grid, sched, fingerprint=fingerprint), options
    if (nfe is None) == (steps is None):
        raise GridError(f"give exactly one of nfe= or steps=, got nfe={nfe}, steps={steps}")
    if steps is None:
        steps = method.steps_for(nfe, **options)
        options = {**method.budget_options(nfe), **options}
    grids_mod.check_steps(steps)  # at most grids.MAX_STEPS, before any work
    if probe and not own_times:
        steps = min(steps, PROBE_STEPS)
    return grids_mod.build(grid, sched, steps, fingerprint=fingerprint), options


def plan(
    model: Model,
    solver: str | Solver | LearnedSolver | None = None,
    *,
    nfe: int | None = None,
    steps: int | None = None,
    grid: str | Grid | None = None,
    variable: str | None = None,
    options: dict[str, Any] | None = None,
    end: str | None = None,
    fingerprint: str | None = None,
    probe: bool = False,
) -> Plan:
    """What `solver` (with `options`) solves on `model` at an NFE budget (or a step count, or a grid's own times).

    `grid`: a Grid or a spec (default logsnr; with no solver, the default table's); `variable`: the ODE's
    integration variable (t, sigma, lambda; default the solver's own); `end`: "sigma_min" (default) or "zero"
    (one more step to σ = 0, counted in the budget); `fingerprint`: the problem's, checked against a grid file's and
    a learned solver's. A learned solver ("file:learned.json") brings its grid and end: give nfe= (its own) or nothing.
    `probe=True` makes every check with little work (a named grid of at most PROBE_STEPS steps, not the budget's):
    the bench checks each cell's plan so, before any cell runs; the plan it returns is not for solving.
    """
    nfe, steps = _budget("nfe", nfe), _budget("steps", steps)
    options = dict(options or {})
    if isinstance(solver, str) and solver not in SOLVERS and is_name(solver):  # "DPM++ 2M Karras": the named sampler
        solver, grid, options, end, variable = _named(model, str(solver), nfe, steps, grid, options, end, variable)
    budget = nfe
    if isinstance(solver, LearnedSolver) or is_file_spec(solver):
        learned = _learned(model, solver, nfe, steps, grid, end, fingerprint)  # type: ignore[arg-type]
        solver, grid, variable, nfe = learned.solver, learned.grid, variable or learned.variable or None, None
        budget = learned.nfe
    if solver is None:
        if (nfe is None) == (steps is None):
            raise GridError(f"give exactly one of nfe= or steps= (with no solver= the budget picks the solver), "
                            f"got nfe={nfe}, steps={steps}")
        solver, table_grid, table_options = default_config(nfe if nfe is not None else steps)
        grid, options = table_grid if grid is None else grid, {**table_options, **options}
    method = get_solver(solver)
    options = _end_options(method, end, options)
    method.check_options(options)  # before any work (and before steps_for and integrates_for read them)
    g, options = _grid_for(method, model, DEFAULT_GRID if grid is None else grid, nfe, steps, options, fingerprint,
                           probe)
    return Plan(method, dynamics_for(model, method, options, variable), g, options, budget)


def solver_of(solver: str | Solver | LearnedSolver) -> Solver:
    """The Solver a name stands for: a registered solver, the solver of a community name, or a learned one's (its file
    read, not checked: plan() checks it)."""
    if isinstance(solver, LearnedSolver):
        return solver.solver
    if is_file_spec(solver):
        return LearnedSolver.load(str(solver)[len("file:"):]).solver
    if isinstance(solver, str) and solver not in SOLVERS and is_name(solver):
        return get_solver(resolve_name(solver).solver)
    return get_solver(solver)


def own_variable(solver: str | Solver, options: dict[str, Any]) -> str:
    """The variable `solver` with `options` steps in when none is asked for: t for stochastic solvers (the reverse
    SDE), the one variable it declares (λ for exponential integrators, σ̄ for iPNDM), else σ̄ (the DDIM ODE)."""
    need = get_solver(solver).integrates_for(**options)
    return need.variables[0] if need.variables is not None and len(need.variables) == 1 else "sigma"


def dynamics_for(model: Model, solver: str | Solver, options: dict[str, Any], variable: str | None = None) -> Dynamics:
    """What `solver` with `options` integrates, built on `model`: the reverse SDE for stochastic ones (in t), else
    the ODE in `variable` (default: `own_variable`)."""
    method = get_solver(solver)
    method.check_options(options)
    if method.integrates_for(**options).stochastic:
        if variable not in (None, "t"):
            raise SolverError(f"solver {method.name!r} samples the reverse SDE, which runs in t; got "
                              f"variable={variable!r}: leave variable out (or pass variable='t')")
        return VPSDE(model.schedule).reverse(model)
    return ode(model, own_variable(method, options) if variable is None else variable)
