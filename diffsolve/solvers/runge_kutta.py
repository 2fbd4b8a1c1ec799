"""Explicit Runge–Kutta methods from Butcher tableaux: y_{n+1} = y_n + h Σ_j b_j k_j,
k_j = f(y_n + h Σ_l a_jl k_l, s_n + c_j h). One loop serves every tableau."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..dynamics import Dynamics
from ..grids import Grid
from ..points import Point, make_points
from .base import Solver, node_points, register
from .cache import shared, time_values


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


class ExplicitRK(Solver):
    """A fixed-step explicit Runge–Kutta solver in the dynamics' own variable (t, σ̄ or λ)."""

    family = "runge-kutta"

    def __init__(self, name: str, tableau: ButcherTableau, description: str):
        self.name, self.tableau, self.order, self.description = name, tableau, tableau.order, description

    def nfe_for(self, steps: int) -> int:
        return self.tableau.stages * steps

    def _coefficients(self, dynamics: Dynamics, grid: Grid) -> list[list[tuple[Point, list[tuple[int, float]]]]]:
        """For every step and stage: its point and the nonzero (l, h·a_jl); the last entry of a step holds the
        nonzero (j, h·b_j) (point None). Float64, built once per (grid values, variable)."""
        tab = self.tableau
        s = dynamics.variable_of(grid.t)
        h = torch.diff(s)
        # Stage times: grid nodes where c = 0 or 1 (no inverse-map round-off), t(s + c h) elsewhere.
        c = torch.tensor(tab.c, dtype=torch.float64)
        stage_t = dynamics.time_of(s[:-1, None] + c[None, :] * h[:, None])
        stage_t[:, c == 0] = grid.t[:-1, None]
        stage_t[:, c == 1] = grid.t[1:, None]
        flat = make_points(dynamics.schedule, stage_t.reshape(-1))
        steps = []
        for i, hi in enumerate(h.tolist()):
            stages = [(flat[i * tab.stages + j], [(k, a * hi) for k, a in enumerate(row) if a != 0.0])
                      for j, row in enumerate(tab.a)]
            steps.append(stages + [(None, [(j, b * hi) for j, b in enumerate(tab.b) if b != 0.0])])
        return steps

    def integrate(
        self, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool, **options: Any
    ) -> tuple[Tensor, list[Tensor]]:
        """y ← y + Σ_j h b_j k_j, k_j = f(y + Σ_l h a_jl k_l, s + c_j h): only the nonzero terms, prebuilt."""
        plan = shared(grid, ("rk", dynamics.variable, self.tableau), time_values(grid),
                      lambda: self._coefficients(dynamics, grid))
        nodes = node_points(dynamics, grid)
        y = dynamics.to_state(x, nodes[0])
        trajectory: list[Tensor] = []
        for i, step in enumerate(plan):
            ks: list[Tensor] = []
            for p, terms in step[:-1]:
                yj = y
                for l_, coef in terms:
                    yj = yj.add(ks[l_], alpha=coef)
                ks.append(dynamics.drift(yj, p))
            for j, coef in step[-1][1]:
                y = y.add(ks[j], alpha=coef)
            if record:
                trajectory.append(dynamics.from_state(y, nodes[i + 1]))
        return dynamics.from_state(y, nodes[-1]), trajectory


for _name, _tab, _desc in (
    ("euler", EULER, "explicit Euler, order 1"),
    ("heun", HEUN, "Heun's method (explicit trapezoid), order 2, 2 evaluations per step"),
    ("midpoint", MIDPOINT, "explicit midpoint, order 2, 2 evaluations per step"),
    ("ralston", RALSTON, "Ralston's method, order 2 with minimal error constant"),
    ("rk3", KUTTA3, "Kutta's third-order method, 3 evaluations per step"),
    ("rk4", RK4, "classical Runge–Kutta, order 4, 4 evaluations per step"),
):
    register(ExplicitRK(_name, _tab, _desc))
