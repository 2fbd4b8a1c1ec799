"""Exponential-integrator samplers of the reverse VP-SDE: DDPM ancestral and SDE-DPM-Solver++(2M).

With h = λ_t − λ_s > 0 (a step from s to t < s), the reverse SDE's linear part is exact and
x_t = (σ_t/σ_s) e^{−h} x_s + 2α_t ∫_0^h e^{−2(h−u)} x̂0(λ_s + u) du + σ_t √(1 − e^{−2h}) z.
- ddpm: x̂0 frozen at s. This is the DDPM posterior q(x_t | x_s, x̂0) sampled with η = 1, on any grid:
  x_t = (σ_t/σ_s) e^{−h} x_s + α_t (1 − e^{−2h}) x̂0_s + σ_t √(1 − e^{−2h}) z.
- sde_dpmpp2m: x̂0 linear in λ through the previous step's x̂0 (D1 = (x̂0_s − x̂0_prev) h/h_prev), adding
  α_t (1 − e^{−2h})/2 · D1 (variant 'midpoint', k-diffusion's and diffusers' default) or
  α_t (1 + (e^{−2h} − 1)/(2h)) · D1 (variant 'taylor', the exact integral of the linear x̂0: diffusers'
  solver_type='heun', named as the ODE 2M's 'taylor'). The first step is ddpm's.

The Gaussian z of a step [τ_a, τ_b] (τ = −t) is the shared Brownian path's increment scaled to unit
variance, z = (W(τ_b) − W(τ_a))/√(τ_b − τ_a): the same W that drives Euler–Maruyama and SRK. The step's
noise σ_t√(1 − e^{−2h}) z then differs from the exact stochastic integral ∫ Φ(t, u) √β dW(u) by
O(h^{3/2}) in mean square per step, so both samplers converge strongly, at order 1, to the reverse
SDE's solution on that path; strong errors against a fine Euler–Maruyama/SRK solution are meaningful.
(Order 1 is also the ceiling of any method that reads only ΔW: the drift's dependence on the path
inside a step needs ∫W dτ, i.e. the Lévy area that SRK uses.)
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from ..checks import Option
from ..dynamics import Dynamics
from ..errors import SolverError
from ..grids import Grid
from ..points import Point
from .base import Solver, node_points, register
from .brownian import check_seed_or_path, grid_taus, path_for
from .contract import EXPONENTIAL_SDE
from .options import PATH, SEED

VARIANTS = ("midpoint", "taylor")


def posterior_coefficients(s: Point, t: Point, dtau: float) -> tuple[float, float, float, float]:
    """(a, b, c, h) of the step x_t = a x_s + b x̂0 + c ΔW, h = λ_t − λ_s: a = (σ_t/σ_s) e^{−h},
    b = α_t (1 − e^{−2h}), c = σ_t √((1 − e^{−2h})/Δτ), so that c ΔW has the posterior's std σ_t √(1 − e^{−2h})."""
    h = t.lam - s.lam
    one_minus = -math.expm1(-2.0 * h)
    return t.sigma / s.sigma * math.exp(-h), t.alpha * one_minus, t.sigma * math.sqrt(one_minus / dtau), h


def dpmpp2m_correction(t: Point, h: float, h_prev: float, b: float, variant: str) -> float:
    """The coefficient of (x̂0_s − x̂0_prev) in a 2M step, k/r with r = h_prev/h and k = b/2 ('midpoint')
    or α_t (1 + (e^{−2h} − 1)/(2h)) ('taylor', the exact integral of x̂0 linear in λ)."""
    if variant not in VARIANTS:
        raise SolverError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    k = 0.5 * b if variant == "midpoint" else t.alpha * (1.0 + math.expm1(-2.0 * h) / (2.0 * h))
    return k * h / h_prev


class ReverseSDEExponential(Solver):
    """The data-prediction exponential integrator of the reverse VP-SDE, one network call per step.

    second_order=False: DDPM ancestral (x̂0 frozen); True: SDE-DPM-Solver++(2M), multistep in λ.
    """

    family = "sde-exponential"
    integrates = EXPONENTIAL_SDE

    def __init__(self, name: str, second_order: bool, description: str):
        self.name, self.second_order, self.description = name, second_order, description
        self.order = 1.0  # strong order: noise read from ΔW alone caps it at 1 (see module docstring)
        self.schema = (SEED, PATH)
        self.renamed = {}
        if second_order:
            self.schema += (Option("variant", "choice", "midpoint", "how x̂0's slope enters: midpoint (diffusers' "
                                   "default) | taylor (exact integral; diffusers' solver_type='heun')",
                                   choices=VARIANTS),)
            self.renamed = {"solver_type": "variant (solver_type='heun' is variant='taylor')"}

    def nfe_for(self, steps: int) -> int:
        return steps

    def check_together(self, options: dict[str, Any]) -> None:
        check_seed_or_path(options)

    def integrate(
        self, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool,
        seed: int | None = None, bm: Any = None, variant: str = "midpoint",
    ) -> tuple[Tensor, list[Tensor]]:
        model = dynamics.model
        assert model is not None  # the declaration (EXPONENTIAL_SDE) requires one; solve() checked it
        nodes = node_points(dynamics, grid)
        taus = grid_taus(dynamics, grid)
        path = path_for(dynamics, grid, x, seed, bm)
        coef, corr, h_prev = [], [], None
        for i in range(grid.steps):  # every coefficient in float64, before the loop
            a, b, c, h = posterior_coefficients(nodes[i], nodes[i + 1], taus[i + 1] - taus[i])
            coef.append((a, b, c))
            use = self.second_order and h_prev is not None
            corr.append(dpmpp2m_correction(nodes[i + 1], h, h_prev, b, variant) if use else 0.0)
            h_prev = h
        shape = x.shape
        trajectory: list[Tensor] = []
        x0_prev: Tensor | None = None
        for i in range(grid.steps):
            a, b, c = coef[i]
            x0 = model.x0_at(x, nodes[i])
            dw = path(taus[i], taus[i + 1]).reshape(shape)
            x_next = x.mul(a).add_(x0, alpha=b).add_(dw, alpha=c)
            if x0_prev is not None:
                x_next.add_(x0 - x0_prev, alpha=corr[i])
            x = x_next
            if self.second_order:
                x0_prev = x0
            if record:
                trajectory.append(x)
        return x, trajectory


register(ReverseSDEExponential(
    "ddpm", False,
    "DDPM ancestral sampling (posterior q(x_t|x_s, x̂0), η = 1) on any grid; strong order 1, 1 evaluation per step",
))
register(ReverseSDEExponential(
    "sde_dpmpp2m", True,
    "SDE-DPM-Solver++(2M) (data prediction, multistep in λ; variant 'midpoint' or 'taylor'); "
    "strong order 1, 1 evaluation per step",
))
