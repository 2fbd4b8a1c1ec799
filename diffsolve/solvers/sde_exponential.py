"""Exponential-integrator samplers of the reverse VP-SDE: DDPM ancestral, SDE-DPM-Solver++(2M) and (3M).

With h = λ_t − λ_s > 0 (a step from s to t < s) and H = 2h, the reverse SDE's linear part is exact and
x_t = (σ_t/σ_s) e^{−h} x_s + 2α_t ∫_0^h e^{−2(h−u)} x̂0(λ_s + u) du + σ_t √(1 − e^{−2h}) z;
for x̂0 a polynomial P in v = u/h the integral is α_t H Σ_k k! φ_{k+1}(−H) [v^k]P (exp/phi.py). The three samplers
interpolate the last 1, 2 or 3 x̂0 in λ (the plan keeps that many):
- ddpm: x̂0 frozen at s. This is the DDPM posterior q(x_t | x_s, x̂0) sampled with η = 1, on any grid:
  x_t = (σ_t/σ_s) e^{−h} x_s + α_t (1 − e^{−2h}) x̂0_s + σ_t √(1 − e^{−2h}) z.
- sde_dpmpp2m: x̂0 linear in λ through the previous step's x̂0 (D1 = (x̂0_s − x̂0_prev) h/h_prev), adding
  α_t (1 − e^{−2h})/2 · D1 (variant 'midpoint', k-diffusion's and diffusers' default) or
  α_t (1 + (e^{−2h} − 1)/(2h)) · D1 = α_t H φ₂(−H) D1 (variant 'taylor', the exact integral of the linear x̂0:
  diffusers' solver_type='heun', named as the ODE 2M's 'taylor'). The first step is ddpm's.
- sde_dpmpp3m: x̂0 through the last three, D1 = h P'(0), D2 = h² P''(0)/2 of their quadratic P (Lu et al.'s
  differences, exp/coeffs.third_order_differences), adding α_t H (φ₂(−H) D1 + φ₃(−H) D2): the D1 term is exact, the
  D2 term half the exact one (the published 3M's weights, as the ODE dpmpp3m's 'diffusers' variant). Its first step
  is ddpm's, its second 2M's 'taylor' step. This is k-diffusion's sample_dpmpp_3m_sde (η = 1), which steps
  x̄ = x/α: x̄ ← e^{−H} x̄ + (1 − e^{−H}) D + φ₂ d1 − φ₃ d2 + σ̄_t √(1 − e^{−H}) z with its φ₂ = 1 + (e^{−H} − 1)/H
  = H φ₂(−H) and −φ₃ = 1/2 − φ₂/H = H φ₃(−H); times α_t, α_t e^{−2h}/α_s = (σ_t/σ_s) e^{−h} and α_t σ̄_t = σ_t give
  the step above. (diffusers' sde-dpmsolver++ with solver_order=3 weighs D2 by α_t(−φ₂(−H) − 1/2) instead of
  α_t(1/2 − φ₂(−H)) = α_t H φ₃(−H): an O(h²) difference per step, so it is another method; tests/test_sde.py.)

All compile to an exponential-integrator plan (solvers/exp/base.py: x_t = a x_s + Σ_j w_j x̂0_j + std·z per
step, run by the one step loop), with to_zero=True a last step to σ = 0 that returns x̂0 (diffusers' and
k-diffusion's end). The Gaussian z of a step [τ_a, τ_b] (τ = −t) is the shared Brownian path's increment scaled to
unit variance, z = (W(τ_b) − W(τ_a))/√(τ_b − τ_a): the same W that drives Euler–Maruyama and SRK (or, with
generator=, torch.randn per step as diffusers draws it). The step's
noise σ_t√(1 − e^{−2h}) z then differs from the exact stochastic integral ∫ Φ(t, u) √β dW(u) by
O(h^{3/2}) in mean square per step, so all three converge strongly, at order 1, to the reverse
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
from .exp.coeffs import Combo, Node, third_order_differences, to_zero
from .exp.phi import phi
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


def sde_step(history: list[Node], t: Node, variant: str) -> StepPlan:
    """The step from s = history[0] to t with the x̂0 at `history` (newest first): the posterior step (x̂0 frozen),
    plus the 2M correction k/r·(x̂0_s − x̂0_prev) or the 3M one α_t H (φ₂(−H) D1 + φ₃(−H) D2), H = 2h."""
    a, b, std, h = posterior_coefficients(history[0], t)
    w = [b]
    if len(history) == 2:
        k = dpmpp2m_correction(t, h, history[0].lam - history[1].lam, b, variant)
        w = [b + k, -k]
    elif len(history) == 3:
        d1, d2 = third_order_differences(history, h)
        f2, f3 = 2.0 * h * phi(2, -2.0 * h), 2.0 * h * phi(3, -2.0 * h)
        w = [(b if j == 0 else 0.0) + t.alpha * (f2 * p + f3 * q) for j, (p, q) in enumerate(zip(d1, d2))]
    return StepPlan(Combo(a, tuple(w)), noise_std=std)


class ReverseSDEExponential(StepNoise, ExpSolver):
    """The data-prediction exponential integrator of the reverse VP-SDE, one network call per step.

    multistep = 1: DDPM ancestral (x̂0 frozen); 2: SDE-DPM-Solver++(2M); 3: SDE-DPM-Solver++(3M), multistep in λ.
    """

    family = "sde-exponential"
    integrates = EXPONENTIAL_SDE
    form = "data"

    def __init__(self, name: str, multistep: int, description: str):
        self.name, self.multistep, self.description = name, multistep, description
        self.order = 1.0  # strong order: noise read from ΔW alone caps it at 1 (see module docstring)
        self.schema = (TO_ZERO, SEED, PATH, GENERATOR)
        self.renamed, self.fixed = {}, {}
        # the variant of the 2M step: an option of sde_dpmpp2m; 3M warms up with 'taylor', as k-diffusion's 3M SDE
        self.warmup = "taylor" if multistep == 3 else "midpoint"
        if multistep == 2:
            self.schema += (Option("variant", "choice", "midpoint", "how x̂0's slope enters: midpoint (diffusers' "
                                   "default) | taylor (exact integral; diffusers' solver_type='heun')",
                                   choices=VARIANTS),)
            self.renamed = {"solver_type": "variant (solver_type='heun' is variant='taylor')"}
        elif multistep == 3:
            why = ("the second step is 2M's 'taylor' (exact) step, as k-diffusion's sample_dpmpp_3m_sde; "
                   "sde_dpmpp2m takes variant=")
            self.fixed = {"variant": why, "solver_type": why}

    def order_for(self, **options: Any) -> float:
        return 1.0

    def build(self, nodes: list[Node], form: str, *, lower_order_final: bool, variant: str | None = None) -> Plan:
        """`sde_step` at each node with the x̂0 kept so far (at most `multistep`), every coefficient in float64."""
        steps: list[StepPlan] = []
        history: list[Node] = []
        for s, t in zip(nodes[:-1], nodes[1:]):
            history = [s, *history][: self.multistep]
            # the step to σ = 0: x̂0 itself (the posterior's limit, no noise)
            steps.append(StepPlan(to_zero(form, s)) if t.zero else sde_step(history, t, variant or self.warmup))
        return Plan(steps, keep=self.multistep)


register(ReverseSDEExponential(
    "ddpm", 1,
    "DDPM ancestral sampling (posterior q(x_t|x_s, x̂0), η = 1) on any grid; strong order 1, 1 evaluation per step",
))
register(ReverseSDEExponential(
    "sde_dpmpp2m", 2,
    "SDE-DPM-Solver++(2M) (data prediction, multistep in λ; variant 'midpoint' or 'taylor'); "
    "strong order 1, 1 evaluation per step",
))
register(ReverseSDEExponential(
    "sde_dpmpp3m", 3,
    "SDE-DPM-Solver++(3M) (data prediction, multistep in λ; k-diffusion's DPM++ 3M SDE); "
    "strong order 1, 1 evaluation per step",
))
