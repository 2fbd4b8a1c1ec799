"""DDIM (Song et al. 2021) = DPM-Solver-1: x_t = α_t x̂0 + √(σ_t² − s²) ε + s z, s = η σ_t √(1 − e^{−2h}).

η = 0 is the deterministic DDIM, one exact-linear-part Euler step in λ (= one Euler step of the DDIM ODE
in σ̄); η = 1 is DDPM's ancestral step; z ~ N(0, I) drawn from `generator` (or a fresh one seeded by `seed`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ...dynamics import Dynamics
from ...errors import SolverError
from ...grids import Grid
from ..base import register
from .base import COMMON_OPTIONS, ExpSolver, Plan, StepPlan
from .coeffs import Combo, Node, first_order


def ddim_step(s: Node, t: Node, eta: float) -> StepPlan:
    """Coefficients of one DDIM step s → t in the noise form, x_t = a x_s + w ε + std z."""
    if t.zero or eta == 0.0:
        return StepPlan(first_order("noise", s, t))
    h = t.lam - s.lam
    q = -math.expm1(-2.0 * h)  # 1 − e^{−2h}
    y = eta * eta * q
    if y > 1.0:
        raise SolverError(
            f"ddim with eta={eta} asks for a noise level above σ_t on a step of h = {h:.4g} in λ "
            f"(η²(1 − e^(−2h)) = {y:.4g} > 1); use eta <= 1"
        )
    std = eta * t.sigma * math.sqrt(q)
    # √(σ_t² − std²) − α_t σ_s/α_s = σ_t (√(1 − y) − 1) − σ_t (e^h − 1), written without cancellation
    w = -t.sigma * y / (1.0 + math.sqrt(1.0 - y)) - t.sigma * math.expm1(h)
    return StepPlan(Combo(t.alpha / s.alpha, (w,)), noise_std=std)


class DDIM(ExpSolver):
    """DDIM with η ≥ 0; η = 0 is DPM-Solver-1, exactly one Euler step of the DDIM ODE in σ̄."""

    name = "ddim"
    order = 1
    form = "noise"
    options = COMMON_OPTIONS + ("eta", "seed", "generator")
    description = (
        "DDIM (= DPM-Solver-1) with eta >= 0 (eta > 0: stochastic, seed= or generator=), 1 evaluation per step"
    )

    def integrate(
        self, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool,
        eta: float = 0.0, seed: int | None = None, generator: torch.Generator | None = None, **options: Any,
    ) -> tuple[Tensor, list[Tensor]]:
        eta = float(eta)
        if not eta >= 0.0 or math.isinf(eta):
            raise SolverError(f"ddim needs a finite eta >= 0, got {eta}; eta = 0 is deterministic DDIM")
        if eta > 0.0 and x.is_cuda and torch.cuda.is_current_stream_capturing():
            raise SolverError("ddim with eta > 0 draws fresh noise every run; it cannot be captured as a CUDA graph "
                              "(drop cuda_graph=True, or use eta=0)")
        if seed is not None and generator is not None:
            raise SolverError("ddim takes seed= or generator=, not both")
        if seed is not None:
            generator = torch.Generator(device=x.device).manual_seed(int(seed))
        return super().integrate(dynamics, x, grid, record=record, eta=eta, generator=generator, **options)

    def build(self, nodes: list[Node], form: str, *, lower_order_final: bool, eta: float = 0.0) -> Plan:
        steps = [ddim_step(nodes[i], nodes[i + 1], eta) for i in range(len(nodes) - 1)]
        return Plan(steps, keep=1)


register(DDIM())
