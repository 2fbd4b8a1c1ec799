"""A solver compiled once on a grid for a loop that someone else drives: one model call, then one plan step.

diffusers' schedulers and k-diffusion's samplers own the loop; diffsolve owns the step. `Program.compile` builds
what `ds.solve` would build for the same model, solver, grid and options — the dynamics, the exponential
integrator's plan (x ← a·x + Σ_j w_j m_j + std·z per step, solvers/exp/base.py) and the model view the solver
integrates (ε or x̂0, thresholded) — and `Program.step` is `plan_step`, the one step of `ds.solve`'s own loop.
Only solvers that call the model once per step fit: multistep exponential integrators, iPNDM and the stochastic
ddim/ddpm/sde_dpmpp2m/sde_dpmpp3m. State in the loop: the carried model outputs and the step index, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..errors import SolverError
from ..grids import Grid
from ..models import Model
from ..plan import dynamics_for
from ..points import Point
from ..solvers import SOLVERS, get_solver
from ..solvers.base import Solver
from ..solvers.brownian import NOISE_OPTIONS  # the driver's loop supplies the noise
from ..solvers.exp.base import Carry, ExpSolver, Plan, plan_step
from ..solvers.exp.threshold import Prediction, prediction_fn

# Names a one-call loop takes for a solver it runs as another (with that one's options): Euler on the DDIM ODE in σ̄
# (ds.sample's default variable for 'euler') is the DDIM step, x̄ ← x̄ + (σ̄' − σ̄) ε; on a rectified flow also
# x ← x + (σ' − σ) v, FlowMatchEulerDiscreteScheduler's step.
ALIASES = {"euler": "ddim"}


def one_call(solver: Solver) -> bool:
    """Whether a solver calls the model exactly once per grid step on a precompiled plan."""
    return isinstance(solver, ExpSolver) and not solver.adaptive and solver.nfe_for(1) == 1


def one_call_solvers() -> list[str]:
    """The solvers (and aliases) a one-call-per-step loop can run."""
    return sorted([name for name, s in SOLVERS.items() if one_call(s)] + list(ALIASES))


def resolve_solver(name: str | Solver, options: dict[str, Any], where: str) -> tuple[ExpSolver, dict[str, Any]]:
    """The solver a one-call loop runs for `name` and its checked options; refused with the alternatives."""
    method = get_solver(name)
    if method.name in ALIASES:
        method = get_solver(ALIASES[method.name])
    method.check_options(dict(options))
    given = [k for k in NOISE_OPTIONS if options.get(k) is not None]
    if given:
        raise SolverError(f"{where} draws each step's noise itself, so solver options {', '.join(given)} do not "
                          f"apply; drop them (diffusers: pass generator= to the pipeline; k-diffusion: "
                          f"noise_sampler=)")
    if not one_call(method):
        per_step = method.nfe_for(1)
        why = ("picks its own steps (adaptive)" if method.adaptive or per_step is None
               else f"calls the model {per_step} times per step")
        raise SolverError(f"solver {method.name!r} {why}, but {where} calls the model once per step; use one of "
                          f"{one_call_solvers()} (or ds.sample for {method.name!r})")
    return method, dict(options)  # type: ignore[return-value]


@dataclass(frozen=True)
class Program:
    """A solver's plan on a grid and the model view it integrates, ready to be stepped by an outside loop."""

    solver: ExpSolver
    plan: Plan
    fn: Prediction  # model output at (x_i, eval point i) → ε or x̂0 (thresholded), one network call
    form: str  # "noise" (fn gives ε) or "data" (fn gives x̂0)
    points: list[Point]  # the grid's nodes (step arithmetic)
    eval_points: list[Point]  # where the network is evaluated at each node (decoupled t_eval, or the nodes)

    @classmethod
    def compile(cls, model: Model, solver: str | Solver, grid: Grid, options: dict[str, Any] | None = None,
                where: str = "this loop") -> Program:
        """The plan `ds.solve(dynamics_for(model, solver, options), x, grid, solver, **options)` would run."""
        method, opts = resolve_solver(solver, dict(options or {}), where)
        dynamics = dynamics_for(model, method, opts)
        method.check(dynamics, grid, opts)
        form = method.form_of(opts)
        threshold, threshold_max = opts.pop("threshold", None), opts.pop("threshold_max", 1.0)
        plan = method.plan(dynamics, grid, form, **opts)
        if any(step.stages for step in plan.steps):
            raise SolverError(f"solver {method.name!r} evaluates intermediate stages inside its steps, but {where} "
                              f"calls the model once per step; use one of {one_call_solvers()}")
        fn = prediction_fn(model, form, threshold, threshold_max)
        return cls(method, plan, fn, form, grid.points, grid.eval_points)

    @property
    def steps(self) -> int:
        """Model calls (= plan steps, the step to σ = 0 included)."""
        return len(self.plan.steps)

    @property
    def noisy(self) -> bool:
        """Whether some step adds noise (a stochastic solver)."""
        return self.plan.noisy

    def needs_noise(self, i: int) -> bool:
        """Whether step i adds noise_std·z_i."""
        return self.plan.steps[i].noise_std > 0.0

    def x0(self, x: Tensor, m: Tensor, i: int) -> Tensor:
        """x̂0 at node i from the output m of `fn` there: m itself (data form) or (x − σ′ m)/α′ (noise form)."""
        if self.form == "data":
            return m
        p = self.eval_points[i]
        return (x - p.sigma * m) * (1.0 / p.alpha)

    def step(self, i: int, x: Tensor, m: Tensor, carry: Carry, noise: Callable[[int], Tensor] | None = None) -> Tensor:
        """x_{i+1} from x_i and m = fn(x_i, eval_points[i]); `carry` holds the earlier outputs (one plan step)."""
        return plan_step(self.plan, i, x, m, carry, self.fn, noise)[1]
