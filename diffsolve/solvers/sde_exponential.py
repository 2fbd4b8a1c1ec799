"""Exponential-integrator samplers of the reverse VP-SDE: DDPM ancestral and SDE-DPM-Solver++(2M).

With h = λ_t − λ_s > 0 (a step from s to t < s), the reverse SDE's linear part is exact and
x_t = (σ_t/σ_s) e^{−h} x_s + 2α_t ∫_0^h e^{−2(h−u)} x̂0(λ_s + u) du + σ_t √(1 − e^{−2h}) z.
- ddpm: x̂0 frozen at s. This is the DDPM posterior q(x_t | x_s, x̂0) sampled with η = 1, on any grid:
  x_t = (σ_t/σ_s) e^{−h} x_s + α_t (1 − e^{−2h}) x̂0_s + σ_t √(1 − e^{−2h}) z.
- sde_dpmpp2m: x̂0 linear in λ through the previous step's x̂0 (D1 = (x̂0_s − x̂0_prev) h/h_prev), adding
  α_t (1 − e^{−2h})/2 · D1 (variant 'midpoint', k-diffusion's and diffusers' default) or
  α_t (1 + (e^{−2h} − 1)/(2h)) · D1 (variant 'taylor', the exact integral of the linear x̂0: diffusers'
  solver_type='heun', named as the ODE 2M's 'taylor'). The first step is ddpm's.

Both compile to an exponential-integrator plan (solvers/exp/base.py: x_t = a x_s + Σ_j w_j x̂0_j + std·z per
step, run by the one step loop), with to_zero=True a last step to σ = 0 that returns x̂0 (diffusers' and
k-diffusion's end). The Gaussian z of a step [τ_a, τ_b] (τ = −t) is the shared Brownian path's increment scaled to
unit variance, z = (W(τ_b) − W(τ_a))/√(τ_b − τ_a): the same W that drives Euler–Maruyama and SRK (or, with
generator=, torch.randn per step as diffusers draws it). The step's
noise σ_t√(1 − e^{−2h}) z then differs from the exact stochastic integral ∫ Φ(t, u) √β dW(u) by
O(h^{3/2}) in mean square per step, so both samplers converge strongly, at order 1, to the reverse
SDE's solution on that path; strong errors against a fine Euler–Maruyama/SRK solution are meaningful.
(Order 1 is also the ceiling of any method that reads only ΔW: the drift's dependence on the path
inside a step needs ∫W dτ, i.e. the Lévy area that SRK uses.)
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import SolverError
from .base import register
from .brownian import StepNoise
from .contract import EXPONENTIAL_SDE
from .exp.base import ExpSolver, Plan, StepPlan
from .exp.coeffs import Combo, Node, to_zero
from .options import GENERATOR, PATH, SEED, TO_ZERO, Option

VARIANTS = ("midpoint", "taylor")


def posterior_coefficients(s: Node, t: Node) -> tuple[float, float, float, float]:
    """(a, b, std, h) of the step x_t = a x_s + b x̂0 + std z, h = λ_t − λ_s: a = (σ_t/σ_s) e^{−h},
    b = α_t (1 − e^{−2h}), std = σ_t √(1 − e^{−2h}), the posterior's standard deviation."""
    h = t.lam - s.lam
    one_minus = -math.expm1(-2.0 * h)
    return t.sigma / s.sigma * math.exp(-h), t.alpha * one_minus, t.sigma * math.sqrt(one_minus), h


def dpmpp2m_correction(t: Node, h: float, h_prev: float, b: float, variant: str) -> float:
    """The coefficient of (x̂0_s − x̂0_prev) in a 2M step, k/r with r = h_prev/h and k = b/2 ('midpoint')
    or α_t (1 + (e^{−2h} − 1)/(2h)) ('taylor', the exact integral of x̂0 linear in λ)."""
    if variant not in VARIANTS:
        raise SolverError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    k = 0.5 * b if variant == "midpoint" else t.alpha * (1.0 + math.expm1(-2.0 * h) / (2.0 * h))
    return k * h / h_prev


class ReverseSDEExponential(StepNoise, ExpSolver):
    """The data-prediction exponential integrator of the reverse VP-SDE, one network call per step.

    second_order=False: DDPM ancestral (x̂0 frozen); True: SDE-DPM-Solver++(2M), multistep in λ.
    """

    family = "sde-exponential"
    integrates = EXPONENTIAL_SDE
    form = "data"

    def __init__(self, name: str, second_order: bool, description: str):
        self.name, self.second_order, self.description = name, second_order, description
        self.order = 1.0  # strong order: noise read from ΔW alone caps it at 1 (see module docstring)
        self.schema = (TO_ZERO, SEED, PATH, GENERATOR)
        self.renamed = {}
        if second_order:
            self.schema += (Option("variant", "choice", "midpoint", "how x̂0's slope enters: midpoint (diffusers' "
                                   "default) | taylor (exact integral; diffusers' solver_type='heun')",
                                   choices=VARIANTS),)
            self.renamed = {"solver_type": "variant (solver_type='heun' is variant='taylor')"}

    def order_for(self, **options: Any) -> float:
        return 1.0

    def build(self, nodes: list[Node], form: str, *, lower_order_final: bool, variant: str = "midpoint") -> Plan:
        """Posterior steps (plus the 2M correction after the first), every coefficient in float64."""
        steps, h_prev = [], None
        for s, t in zip(nodes[:-1], nodes[1:]):
            if t.zero:  # the step to σ = 0: x̂0 itself (the posterior's limit, no noise)
                steps.append(StepPlan(to_zero(form, s)))
                continue
            a, b, std, h = posterior_coefficients(s, t)
            k = dpmpp2m_correction(t, h, h_prev, b, variant) if self.second_order and h_prev is not None else 0.0
            steps.append(StepPlan(Combo(a, (b + k, -k) if k else (b,)), noise_std=std))
            h_prev = h
        return Plan(steps, keep=2 if self.second_order else 1)


register(ReverseSDEExponential(
    "ddpm", False,
    "DDPM ancestral sampling (posterior q(x_t|x_s, x̂0), η = 1) on any grid; strong order 1, 1 evaluation per step",
))
register(ReverseSDEExponential(
    "sde_dpmpp2m", True,
    "SDE-DPM-Solver++(2M) (data prediction, multistep in λ; variant 'midpoint' or 'taylor'); "
    "strong order 1, 1 evaluation per step",
))
