"""One entry point: dynamics × solver × grid → Solution (final state, counted NFE, trajectory)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from . import grids as grids_mod
from .dynamics import VPSDE, Dynamics, ode
from .errors import GridError, ModelError, SolverError
from .grids import Grid
from .models import Model
from .solvers import get_solver
from .solvers.base import Solver


@dataclass
class Solution:
    """The result of a solve: x at the grid's last time, in the model's coordinates."""

    x: Tensor
    nfe: int
    grid: Grid
    solver: str
    trajectory: Tensor | None = None  # shape (steps + 1, *x.shape) when requested
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return self.grid.steps


def _as_grid(dynamics: Dynamics, grid: Grid | Tensor | list[float]) -> Grid:
    if isinstance(grid, Grid):
        if grid.schedule != dynamics.schedule:
            raise GridError(
                f"the grid was built on {grid.schedule!r} but the dynamics use {dynamics.schedule!r}; "
                f"build the grid from the same schedule"
            )
        return grid
    return grids_mod.custom(dynamics.schedule, grid)


def _check_direction(dynamics: Dynamics, grid: Grid) -> None:
    if grid.decreasing != dynamics.time_reversed:
        want = "decreasing (noise → data)" if dynamics.time_reversed else "increasing (data → noise)"
        raise GridError(
            f"{dynamics!r} needs grid times {want}, but the grid runs from t={float(grid.t[0]):.6g} "
            f"to t={float(grid.t[-1]):.6g}; reverse the grid (grid.t.flip(0))"
        )


def solve(
    dynamics: Dynamics,
    x: Tensor,
    grid: Grid | Tensor | list[float],
    solver: str | Solver = "heun",
    *,
    trajectory: bool = False,
    grad: bool = False,
    cuda_graph: bool = False,
    **options: Any,
) -> Solution:
    """Integrate `dynamics` from x at grid.t[0] to grid.t[-1] with `solver` (a name or a Solver).

    x is in the model's coordinates (VP unless the model says coords="ve"); options go to the
    solver (e.g. rtol/atol for dopri5, seed for euler_maruyama). The NFE is counted, not computed.
    cuda_graph=True captures the fixed-step loop as one CUDA graph on first use and replays it
    (diffsolve.graphs); its NFE is the count made while capturing.
    """
    if not isinstance(dynamics, Dynamics):
        raise SolverError(
            f"solve() integrates dynamics, got {type(dynamics).__name__}; pass diffsolve.ode(model, 'sigma') "
            f"(or an SDE such as diffsolve.VPSDE(schedule).reverse(model)), or call diffsolve.sample(model, x_T, …)"
        )
    method = get_solver(solver)
    grid = _as_grid(dynamics, grid)
    _check_direction(dynamics, grid)
    method.check(dynamics, grid, options)
    model: Model | None = dynamics.model
    if not isinstance(x, Tensor) or not torch.is_floating_point(x):
        raise ModelError(
            f"x must be a floating-point tensor, got {type(x).__name__}"
            + (f" of dtype {x.dtype}" if isinstance(x, Tensor) else "")
            + "; convert it with torch.as_tensor(x, dtype=torch.float32)"
        )
    if x.ndim < 1:
        raise ModelError(f"x must have a leading batch dimension, got shape {tuple(x.shape)}; use x[None]")
    if x.shape[0] < 1:
        raise ModelError(f"x has an empty batch (shape {tuple(x.shape)}); draw at least one sample")
    start, end = grid.points[0], grid.points[-1]
    nfe_before = 0
    if model is not None:
        model.check_input(x)
        model.finite_checks.clear()
        if model.check_finite:  # NaN/Inf in x_T is blamed on the input, not on the network
            model.finite_checks.record(x, start.t, "input")
        nfe_before = model.nfe
        x_vp = model.to_vp(x, start)
    else:
        x_vp = x
    graph_nfe = None
    with torch.set_grad_enabled(grad):
        if cuda_graph:
            from .graphs import integrate_graphed

            x_end, traj, graph_nfe = integrate_graphed(method, dynamics, x_vp, grid, record=trajectory, **options)
        else:
            x_end, traj = method.integrate(dynamics, x_vp, grid, record=trajectory, **options)
    if model is not None:
        model.raise_if_not_finite()
        nfe = model.nfe - nfe_before if graph_nfe is None else graph_nfe
        to_user = model.from_vp
    else:
        nfe = 0
        def to_user(v: Tensor, p: Any) -> Tensor:
            return v
    stacked = None
    if trajectory:
        stacked = torch.stack([to_user(v, p) for v, p in zip([x_vp] + traj, grid.points)])
    info = {"cuda_graph": cuda_graph}
    return Solution(x=to_user(x_end, end), nfe=nfe, grid=grid, solver=method.name, trajectory=stacked, info=info)


# sample()'s configuration when no solver is given: the first entry whose NFE bound covers the budget.
# Chosen by measurement (benchmarks/tuned_grids.py, benchmarks/RESULTS.md "Tuned grids"): the configuration
# with the smallest geometric mean of (its relative error / the best standard one's) over gmm-64, gmm-2d,
# toy-2d and digits-8x8 on held-out draws. (max NFE, solver, grid, options); no tuning at call time.
# Measured at NFE 4, 5, 6, 8, 10, 15, 20 over dpmpp2m, dpmpp3m, unipc (lower_order_final) and ipndm order 2, 3;
# NFE 7 and NFE > 20 follow their neighbours unmeasured.
DEFAULT_CONFIGS: tuple[tuple[float, str, str, dict[str, Any]], ...] = (
    (4, "dpmpp2m", "quadratic", {"lower_order_final": True}),
    (5, "dpmpp3m", "quadratic", {"lower_order_final": True, "variant": "taylor"}),  # the variant measured
    (6, "ipndm", "quadratic", {"order": 2}),
    (float("inf"), "ipndm", "quadratic", {"order": 3}),
)


def default_config(budget: int) -> tuple[str, str, dict[str, Any]]:
    """(solver, grid, options) sample() uses at this NFE (or step count) when no solver is given."""
    for bound, solver, grid, options in DEFAULT_CONFIGS:
        if budget <= bound:
            return solver, grid, dict(options)
    raise GridError(f"no default configuration for nfe={budget}; pass solver=")


MAX_STEPS = 10**7  # sample()'s bound on a grid's steps: ~2 GB of Python-float points and coefficients


def sample(
    model: Model,
    x: Tensor,
    *,
    solver: str | Solver | None = None,
    nfe: int | None = None,
    steps: int | None = None,
    grid: str | Grid | None = None,
    variable: str | None = None,
    **options: Any,
) -> Solution:
    """The common case: sample from x_T over the whole schedule with an NFE budget or a step count.

    Builds what the solver integrates with these options: the ODE in `variable` (t → probability-flow ODE;
    sigma, lambda → DDIM ODE; default "sigma" as in `ode()`, or the one variable a solver steps in, λ for the
    exponential integrators) — or, for a stochastic solver (or options, e.g. ddim with eta > 0), the
    reverse-time VP-SDE — and a grid: a Grid, or a spec ("logsnr", "karras:rho=5", "custom:1.0,0.5,0.001",
    "file:grid.json"; see diffsolve.grids) with the steps that fit `nfe`. Adaptive solvers (dopri5,
    dpm_adaptive) take rtol=/atol= and no budget. When the budget cannot be spent exactly (heun at nfe=5
    spends 4), Solution.info["nfe_requested"] says so and a UserWarning is given (once per call site).
    With no `solver`, the measured table DEFAULT_CONFIGS picks solver, grid and options for the budget
    (default_config(nfe or steps); explicit `grid=` and options win); with a solver, `grid` defaults to logsnr.
    """
    for label, value in (("nfe", nfe), ("steps", steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise GridError(f"{label} must be a positive integer, got {value!r}; pass e.g. {label}=20")
    if solver is None:
        if (nfe is None) == (steps is None):
            raise GridError(f"give exactly one of nfe= or steps= (with no solver= the budget picks the solver), "
                            f"got nfe={nfe}, steps={steps}")
        solver, table_grid, table_options = default_config(nfe if nfe is not None else steps)
        grid, options = table_grid if grid is None else grid, {**table_options, **options}
    grid = "logsnr" if grid is None else grid
    method = get_solver(solver)
    fixed = isinstance(grid, Grid) or grids_mod.parse(grid).fixed
    if method.adaptive:
        if nfe is not None or steps is not None:
            raise SolverError(f"solver {method.name!r} is adaptive: it picks its own steps; give rtol=/atol= "
                            f"instead of nfe={nfe}, steps={steps}")
        g = grids_mod.custom(model.schedule, [model.schedule.t_max, model.schedule.t_min])
    elif fixed and nfe is None and steps is None:
        g = grids_mod.build(grid, model.schedule)
    else:
        if (nfe is None) == (steps is None):
            raise GridError(f"give exactly one of nfe= or steps=, got nfe={nfe}, steps={steps}")
        if steps is None:
            steps = method.steps_for(nfe)
            options = {**method.budget_options(nfe), **options}
        if steps > MAX_STEPS:
            raise GridError(
                f"{steps} steps would need about {steps * 200 / 2**30:.3g} GiB for the grid's points and "
                f"coefficients alone; use at most {MAX_STEPS} steps (if you mean it, raise the module's bound: "
                f"importlib.import_module('diffsolve.solve').MAX_STEPS = …; diffsolve.solve is the function)"
            )
        g = grids_mod.build(grid, model.schedule, steps)
    dyn = dynamics_for(model, method, options, variable)
    sol = solve(dyn, x, g, method, **options)
    if nfe is not None and sol.nfe != nfe:
        sol.info.update(nfe_requested=int(nfe), nfe_spent=sol.nfe)
        _warn_budget(method.name, int(nfe), sol.nfe)
    return sol


def _warn_budget(solver: str, asked: int, spent: int) -> None:
    """One UserWarning that the budget was not spent exactly (Python shows it once per call site by default)."""
    warnings.warn(f"solver {solver!r} spent {spent} evaluations of the nfe={asked} asked for (whole steps only); "
                  f"ask for a multiple of its evaluations per step to spend it exactly", stacklevel=3)


def dynamics_for(model: Model, solver: str | Solver, options: dict[str, Any], variable: str | None = None) -> Dynamics:
    """What `solver` with `options` integrates, built on `model`: the reverse VP-SDE for stochastic ones, else the
    ODE in `variable` (default: the one variable the solver steps in, λ for exponential integrators, else σ̄)."""
    method = get_solver(solver)
    method.check_options(options)  # before any work (and before integrates_for reads them)
    need = method.integrates_for(**options)
    if need.stochastic:
        if variable not in (None, "t"):
            raise SolverError(f"solver {method.name!r} samples the reverse SDE, which runs in t; got "
                              f"variable={variable!r}: leave variable out (or pass variable='t')")
        return VPSDE(model.schedule).reverse(model)
    own = need.variables[0] if need.variables is not None and len(need.variables) == 1 else "sigma"
    return ode(model, own if variable is None else variable)
