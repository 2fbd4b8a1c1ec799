"""Explicit Runge–Kutta methods from Butcher tableaux: y_{n+1} = y_n + h Σ_j b_j k_j,
k_j = f(y_n + h Σ_l a_jl k_l, s_n + c_j h). One loop serves every tableau.

to_zero=True adds, after the grid's last step, the first-order step to σ = 0 of the exponential integrators: one more
evaluation at the grid's end, returning x̂0 = (x − σ ε)/α there (in σ̄ on the DDIM ODE: x̄ + (0 − σ̄)·ε, Euler's
step, as k-diffusion's samplers end on a trailing 0). Methods whose stages all lie on grid nodes (Euler, Heun) take
grids with decoupled evaluation times (the peers' fractional-step grids, diffsolve.peer_grids)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..dynamics import Dynamics
from ..errors import SolverError
from ..grids import Grid
from ..models import Model, x0_of_eps
from ..points import Point, make_points
from .base import Solver, node_points, register, zero_end_state
from .cache import shared, time_values
from .contract import MODEL_ODE, Integrates
from .options import TO_ZERO


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients (a, b, c) of an explicit RK method; a is strictly lower triangular by rows."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int

    @property
    def stages(self) -> int:
        return len(self.b)


EULER = ButcherTableau(a=((),), b=(1.0,), c=(0.0,), order=1)
HEUN = ButcherTableau(a=((), (1.0,)), b=(0.5, 0.5), c=(0.0, 1.0), order=2)
MIDPOINT = ButcherTableau(a=((), (0.5,)), b=(0.0, 1.0), c=(0.0, 0.5), order=2)
RALSTON = ButcherTableau(a=((), (2 / 3,)), b=(0.25, 0.75), c=(0.0, 2 / 3), order=2)
KUTTA3 = ButcherTableau(a=((), (0.5,), (-1.0, 2.0)), b=(1 / 6, 2 / 3, 1 / 6), c=(0.0, 0.5, 1.0), order=3)
RK4 = ButcherTableau(
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    c=(0.0, 0.5, 0.5, 1.0),
    order=4,
)


@dataclass(frozen=True)
class Stage:
    """One stage of a step: its point, the grid node it lies on (c = 0 or 1; None between nodes) and the nonzero
    (l, h·a_jl) of its input."""

    point: Point
    node: int | None
    terms: tuple[tuple[int, float], ...]


Step = tuple[tuple[Stage, ...], tuple[tuple[int, float], ...]]  # the stages, then the nonzero (j, h·b_j)


def step_to_zero(model: Model, x: Tensor, end: Point, at: Point) -> Tensor:
    """The first-order step from the grid's end to σ = 0 (DDIM's, = Euler's in σ̄): x̂0 = (x − σ ε_θ(x, at))/α with
    α, σ at the end and the network at its evaluation point `at`; one network call."""
    return zero_end_state(model, x0_of_eps(x, model.eps_at(x, at), end), end)


class ExplicitRK(Solver):
    """A fixed-step explicit Runge–Kutta solver in the dynamics' own variable (t, σ̄ or λ); with to_zero, one more
    step from the grid's end to σ = 0 that returns x̂0 (k-diffusion's trailing 0, diffusers' final step)."""

    family = "runge-kutta"
    schema = (TO_ZERO,)

    def __init__(self, name: str, tableau: ButcherTableau, description: str):
        self.name, self.tableau, self.order, self.description = name, tableau, tableau.order, description

    def nfe_for(self, steps: int) -> int:
        """Stages per step (to_zero=True adds one more: the step to σ = 0)."""
        return self.tableau.stages * steps

    @property
    def accepts_decoupled(self) -> bool:
        """Every stage on a grid node (c = 0 or 1: Euler, Heun), so decoupled evaluation times apply to each."""
        return all(c in (0.0, 1.0) for c in self.tableau.c)

    def integrates_for(self, **options: Any) -> Integrates:
        """Any ODE; with to_zero a model-backed one from noise to data (its last step reads the model's x̂0)."""
        return MODEL_ODE if options.get("to_zero") else self.integrates

    def _check(self, dynamics: Dynamics, grid: Grid, options: dict[str, Any]) -> None:
        super()._check(dynamics, grid, options)
        if grid.decoupled and not dynamics.decouples:
            raise SolverError(f"grid {grid.name!r} has decoupled evaluation times, but {dynamics!r} calls its model "
                              f"at the step's own time only; pass diffsolve.ode(model, variable), or Grid(schedule, "
                              f"grid.t)")

    def _coefficients(self, dynamics: Dynamics, grid: Grid) -> list[Step]:
        """Every step's stages and its weights (h·b_j), float64, built once per (grid values, variable)."""
        tab = self.tableau
        s = dynamics.variable_of(grid.t)
        h = torch.diff(s)
        # Stage times: grid nodes where c = 0 or 1 (no inverse-map round-off), t(s + c h) elsewhere.
        c = torch.tensor(tab.c, dtype=torch.float64)
        stage_t = dynamics.time_of(s[:-1, None] + c[None, :] * h[:, None])
        stage_t[:, c == 0] = grid.t[:-1, None]
        stage_t[:, c == 1] = grid.t[1:, None]
        flat = make_points(dynamics.schedule, stage_t.reshape(-1))
        steps: list[Step] = []
        for i, hi in enumerate(h.tolist()):
            stages = tuple(Stage(flat[i * tab.stages + j], i + int(cj) if cj in (0.0, 1.0) else None,
                                 tuple((k, a * hi) for k, a in enumerate(row) if a != 0.0))
                           for j, (row, cj) in enumerate(zip(tab.a, tab.c)))
            steps.append((stages, tuple((j, b * hi) for j, b in enumerate(tab.b) if b != 0.0)))
        return steps

    def integrate(
        self, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool, to_zero: bool = False, **options: Any
    ) -> tuple[Tensor, list[Tensor]]:
        """y ← y + Σ_j h b_j k_j, k_j = f(y + Σ_l h a_jl k_l, s + c_j h): only the nonzero terms, prebuilt; the
        network at a node's evaluation time on a decoupled grid; then with to_zero the step to σ = 0."""
        plan = shared(grid, ("rk", dynamics.variable, self.tableau), time_values(grid),
                      lambda: self._coefficients(dynamics, grid))
        nodes = node_points(dynamics, grid)
        evals = grid.eval_points if grid.decoupled else None
        y = dynamics.to_state(x, nodes[0])
        trajectory: list[Tensor] = []
        for i, (stages, weights) in enumerate(plan):
            ks: list[Tensor] = []
            for stage in stages:
                yj = y
                for l_, coef in stage.terms:
                    yj = yj.add(ks[l_], alpha=coef)
                ks.append(dynamics.drift(yj, stage.point) if evals is None
                          else dynamics.drift_at(yj, stage.point, evals[stage.node]))  # type: ignore[index]
            for j, coef in weights:
                y = y.add(ks[j], alpha=coef)
            if record:
                trajectory.append(dynamics.from_state(y, nodes[i + 1]))
        x_end = dynamics.from_state(y, nodes[-1])
        if to_zero:
            at = nodes[-1] if evals is None else evals[-1]
            x_end = step_to_zero(dynamics.model, x_end, nodes[-1], at)  # type: ignore[arg-type]  # model checked (MODEL_ODE)
            if record:
                trajectory.append(x_end)
        return x_end, trajectory


for _name, _tab, _desc in (
    ("euler", EULER, "explicit Euler, order 1"),
    ("heun", HEUN, "Heun's method (explicit trapezoid), order 2, 2 evaluations per step"),
    ("midpoint", MIDPOINT, "explicit midpoint, order 2, 2 evaluations per step"),
    ("ralston", RALSTON, "Ralston's method, order 2 with minimal error constant"),
    ("rk3", KUTTA3, "Kutta's third-order method, 3 evaluations per step"),
    ("rk4", RK4, "classical Runge–Kutta, order 4, 4 evaluations per step"),
):
    register(ExplicitRK(_name, _tab, _desc))
