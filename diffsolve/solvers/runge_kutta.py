"""Explicit Runge–Kutta methods from Butcher tableaux: y_{n+1} = y_n + h Σ_j b_j k_j,
k_j = f(y_n + h Σ_l a_jl k_l, s_n + c_j h). One loop serves every tableau."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..dynamics import Dynamics
from ..grids import Grid
from ..points import make_points
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

    def _coefficients(self, dynamics: Dynamics, grid: Grid) -> tuple[list, list, list]:
        """Stage points and h·a, h·b for every step, in float64, once per (grid, variable)."""
        tab, n = self.tableau, grid.steps
        s = dynamics.variable_of(grid.t)
        h = torch.diff(s)
        # Stage times: grid nodes where c = 0 or 1 (no inverse-map round-off), t(s + c h) elsewhere.
        c = torch.tensor(tab.c, dtype=torch.float64)
        stage_t = dynamics.time_of(s[:-1, None] + c[None, :] * h[:, None])
        stage_t[:, c == 0] = grid.t[:-1, None]
        stage_t[:, c == 1] = grid.t[1:, None]
        flat = make_points(dynamics.schedule, stage_t.reshape(-1))
        stage_points = [flat[i * tab.stages : (i + 1) * tab.stages] for i in range(n)]
        hs = h.tolist()
        ha = [[[a * hi for a in row] for row in tab.a] for hi in hs]
        hb = [[b * hi for b in tab.b] for hi in hs]
        return stage_points, ha, hb

    def integrate(
        self, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool, **options: Any
    ) -> tuple[Tensor, list[Tensor]]:
        tab, n = self.tableau, grid.steps
        stage_points, ha, hb = shared(
            grid, ("rk", dynamics.variable, tab), time_values(grid), lambda: self._coefficients(dynamics, grid)
        )
        nodes = node_points(dynamics, grid)

        y = dynamics.to_state(x, nodes[0])
        trajectory: list[Tensor] = []
        for i in range(n):
            ks: list[Tensor] = []
            for j, p in enumerate(stage_points[i]):
                yj = y
                for l_, coef in enumerate(ha[i][j]):
                    if tab.a[j][l_] != 0.0:
                        yj = yj.add(ks[l_], alpha=coef)
                ks.append(dynamics.drift(yj, p))
            for j, coef in enumerate(hb[i]):
                if tab.b[j] != 0.0:
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
