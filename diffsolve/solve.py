"""One entry point: dynamics × solver × grid → Solution (final state, counted NFE, trajectory)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from . import grids as grids_mod
from .checks import Option
from .dynamics import Dynamics
from .errors import GridError, ModelError, SolverError
from .grids import Grid
from .models import Model, check_state
from .plan import plan
from .solvers import get_solver
from .solvers.base import Solver
from .solvers.learned import LearnedSolver


@dataclass
class Solution:
    """The result of a solve: x at the grid's last time, in the model's coordinates."""

    x: Tensor
    nfe: int
    grid: Grid
    solver: str
    trajectory: Tensor | None = None  # shape (steps + 1, *x.shape) when requested; to_zero appends x̂0 (= x)
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


def check_direction(dynamics: Dynamics, grid: Grid) -> None:
    """Raise unless the grid runs the way the dynamics integrate (noise → data for a reverse-time ODE)."""
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
    for name, value in (("trajectory", trajectory), ("grad", grad), ("cuda_graph", cuda_graph)):
        Option(name, "bool", False).check(value, owner="solve()", fix=f"pass {name}=True or {name}=False",
                                          error=SolverError)
    method = get_solver(solver)
    grid = _as_grid(dynamics, grid)
    check_direction(dynamics, grid)
    method.check(dynamics, grid, options)
    model: Model | None = dynamics.model
    check_state(x)
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
        if model.check_finite:  # NaN/Inf made by the step arithmetic itself (e.g. huge but finite outputs)
            model.finite_checks.record(x_end, end.t, "state")
        model.raise_if_not_finite()
        nfe = model.nfe - nfe_before if graph_nfe is None else graph_nfe
        to_user = model.from_vp
    else:
        nfe = 0
        def to_user(v: Tensor, p: Any) -> Tensor:
            return v
    stacked = None
    if trajectory:
        # one state per grid time, then x̂0 after a step to σ = 0 (mapped back as the end state: zero_end_state)
        stacked = torch.stack([to_user(v, p) for v, p in zip([x_vp] + traj, grid.points + [end])])
    info = {"cuda_graph": cuda_graph}
    return Solution(x=to_user(x_end, end), nfe=nfe, grid=grid, solver=method.name, trajectory=stacked, info=info)


def _not_a_model(model: Any) -> ModelError:
    """sample()'s error for a `model` that is no Model: a problem's name or a Problem gets its model's accessor."""
    wrap = ("wrap your network first, e.g. diffsolve.EpsModel(net, diffsolve.VPLinear()) (or use "
            "diffsolve.solve(dynamics, …))")
    if isinstance(model, str):
        return ModelError(f"sample() takes a diffsolve Model, got the string {model!r}; a name is not a model: for "
                          f"the problem registered under it pass diffsolve.problems.get({model!r}).model() (or "
                          f".model(schedule)), else {wrap}")
    # a Problem (by its two methods: diffsolve.problems sits above this module and imports it)
    if callable(getattr(model, "model", None)) and callable(getattr(model, "x_T", None)):
        return ModelError(f"sample() takes a diffsolve Model, got the problem {model!r}; pass its model: "
                          f"problem.model() (or problem.model(schedule))")
    return ModelError(f"sample() takes a diffsolve Model, got {type(model).__name__}; {wrap}")


def sample(
    model: Model,
    x: Tensor,
    *,
    solver: str | Solver | LearnedSolver | None = None,
    nfe: int | None = None,
    steps: int | None = None,
    grid: str | Grid | None = None,
    variable: str | None = None,
    end: str | None = None,
    **options: Any,
) -> Solution:
    """The common case: sample from x_T over the whole schedule with an NFE budget or a step count.

    What is solved comes from the cell plan (diffsolve.plan.plan): the reverse SDE for a stochastic solver,
    else the sampling ODE in `variable` (default: the solver's own, λ for exponential integrators, else σ̄);
    a grid from a Grid or a spec ("logsnr" by default, "karras:rho=5", "custom:1.0,0.5,0.001", "file:g.json")
    with the steps that fit `nfe`; adaptive solvers (dopri5, dpm_adaptive) take rtol=/atol= and no budget.
    `end="zero"` adds the step to σ = 0 within the budget (solvers with to_zero). A learned solver
    (`solver="file:learned.json"`, or the LearnedSolver of ds.solvers.learn) brings its own grid and end, and is refused
    for another schedule or another network (its file records the weights' fingerprint). With no `solver`, the
    measured table diffsolve.plan.DEFAULT_CONFIGS picks solver, grid and options (explicit ones win). When the
    budget cannot be spent exactly (heun at nfe=5 spends 4), Solution.info["nfe_requested"] says so and a
    UserWarning is given (once per call site).
    """
    if not isinstance(model, Model):
        raise _not_a_model(model)
    p = plan(model, solver, nfe=nfe, steps=steps, grid=grid, variable=variable, options=options, end=end)
    sol = solve(p.dynamics, x, p.grid, p.solver, **p.options)
    if nfe is not None and sol.nfe != nfe:
        sol.info.update(nfe_requested=int(nfe), nfe_spent=sol.nfe)
        _warn_budget(p.solver.name, int(nfe), sol.nfe)
    return sol


def _warn_budget(solver: str, asked: int, spent: int) -> None:
    """One UserWarning that the budget was not spent exactly (Python shows it once per call site by default)."""
    warnings.warn(f"solver {solver!r} spent {spent} evaluations of the nfe={asked} asked for (whole steps only); "
                  f"ask for a multiple of its evaluations per step to spend it exactly", stacklevel=3)
