"""The refinement's parameters of a grid, as one torch map from parameters to times (differentiable).

K steps from t_max to t_min: θ ∈ R^{K−1}, λ_i = λ_0 + F_i (λ_K − λ_0) with F = cumsum(softmax([θ, 0])), so every
grid is strictly monotone with exact end points; with K − 1 more parameters δ, the network is evaluated at
λ′_i = clip(λ_i − δ_i) at nodes 1…K−1 (node 0 at t_max itself, the last node never). The same map gives the float
grid (detached: what is saved and solved) and the differentiable points of a gradient (diffsolve.solvers.exp.
weighted), so both paths see the same times.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..grids import Grid
from ..points import Point, differentiable_points
from ..schedules import F64, Schedule
from ..solvers.base import Solver


@dataclass(frozen=True)
class Span:
    """The λ span of a K-step grid on a schedule, from t_max to t_min."""

    schedule: Schedule
    steps: int

    @property
    def ends(self) -> tuple[float, float]:
        return self.schedule.t_max, self.schedule.t_min

    def lam_ends(self) -> tuple[float, float]:
        return float(self.schedule.lam(self.schedule.t_max)), float(self.schedule.lam(self.schedule.t_min))

    def size(self, decoupled: bool) -> int:
        """The number of parameters: K − 1 step logits, and K − 1 evaluation shifts when decoupled."""
        return (self.steps - 1) * (2 if decoupled else 1)

    def times(self, params: Tensor) -> tuple[Tensor, Tensor | None]:
        """(t, t_eval or None) of the parameters (float64, differentiable in them)."""
        k = self.steps
        lam0, lam1 = self.lam_ends()
        theta, delta = params[: k - 1], params[k - 1:]
        frac = torch.cumsum(torch.softmax(torch.cat([theta, theta.new_zeros(1)]), 0), 0)[:-1]
        lam = lam0 + frac * (lam1 - lam0)
        t0, t1 = (torch.tensor([v], dtype=F64) for v in self.ends)
        t = torch.cat([t0, self.schedule.t_from_lambda(lam), t1])
        if not delta.numel():
            return t, None
        lam_eval = torch.clamp(lam - delta, min(lam0, lam1), max(lam0, lam1))  # δ = 0: exactly the node's own time
        return t, torch.cat([t0, self.schedule.t_from_lambda(lam_eval), t1])

    def grid(self, params: Tensor) -> Grid:
        """The float grid of the parameters (checked: strictly monotone, inside the schedule)."""
        with torch.no_grad():
            t, t_eval = self.times(params.detach())
        return Grid(self.schedule, t, "tuned", t_eval)

    def points(self, params: Tensor) -> tuple[list[Point], list[Point] | None]:
        """Differentiable points at the grid's times and evaluation times."""
        t, t_eval = self.times(params)
        return differentiable_points(self.schedule, t), None if t_eval is None else differentiable_points(
            self.schedule, t_eval)

    def solver(self, params: Tensor, solver: Solver) -> Solver:
        """The solver at these parameters: the fit's own (a grid's parameters leave it alone; weights.py learns it)."""
        return solver

    def params_of(self, grid: Grid, decoupled: bool) -> Tensor:
        """The parameters of a grid: its λ-step logits and, when decoupled, its evaluation shifts δ_i = λ_i − λ′_i
        (zero for a grid without evaluation times)."""
        d = torch.diff(grid.lam)
        logd = torch.log(d / d.sum())
        theta = logd[:-1] - logd[-1]
        if not decoupled:
            return theta
        if grid.t_eval is None:
            return torch.cat([theta, torch.zeros(self.steps - 1, dtype=F64)])
        return torch.cat([theta, (grid.lam - self.schedule.lam(grid.t_eval))[1:-1]])
