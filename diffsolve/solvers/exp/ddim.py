"""DDIM (Song et al. 2021) = DPM-Solver-1: x_t = α_t x̂0 + √(σ_t² − s²) ε + s z, s = η σ_t √(1 − e^{−2h}).

η = 0 is the deterministic DDIM, one exact-linear-part Euler step in λ (= one Euler step of the DDIM ODE
in σ̄), integrating `ode(model, "lambda")`. η > 0 is stochastic: it samples the reverse SDE of the model
(η = 1 is DDPM's ancestral step, exactly `ddpm`), with z_i = ΔW_i/√Δτ_i read from the shared seeded
Brownian path (seed= or bm=), so that ddim(eta=1, seed=s) equals ddpm(seed=s) on the same grid; or, to
reproduce a loop that draws torch.randn per step (diffusers), z_i from generator=.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import Tensor

from ...checks import Option
from ...dynamics import Dynamics
from ...errors import SolverError
from ...grids import Grid
from ..base import register
from ..brownian import NOISE_OPTIONS, StepNoise
from ..contract import EXPONENTIAL_ODE, EXPONENTIAL_SDE, Integrates
from ..options import GENERATOR, PATH, SEED, THRESHOLD, TO_ZERO
from .base import ExpSolver, Plan, StepPlan
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


class DDIM(StepNoise, ExpSolver):
    """DDIM with η ≥ 0; η = 0 is DPM-Solver-1, exactly one Euler step of the DDIM ODE in σ̄."""

    name = "ddim"
    order = 1
    form = "noise"
    fixed = {"lower_order_final": "DDIM is first order at every step, there is nothing to lower",
             "order": "1; dpmpp2m, unipc or ipndm reach a higher order at one evaluation per step",
             "form": "DDIM is the same step in both forms"}
    schema = (TO_ZERO,) + THRESHOLD + (
        Option("eta", "float", 0.0, "the noise level: 0 deterministic DDIM, 1 DDPM's posterior (stochastic if > 0)",
               low=0.0),
        SEED, PATH, GENERATOR,
    )
    description = (
        "DDIM (= DPM-Solver-1) with eta >= 0 (eta > 0: samples the reverse SDE; noise from seed=/bm= on the shared "
        "Brownian path, or generator=), 1 evaluation per step"
    )

    def integrates_for(self, **options: Any) -> Integrates:
        """eta > 0 samples the reverse SDE of the model (η = 1: exactly ddpm); eta = 0 the ODE in λ."""
        return EXPONENTIAL_SDE if options.get("eta", 0.0) > 0.0 else EXPONENTIAL_ODE

    def order_for(self, **options: Any) -> float:
        """Order 1 for the ODE; for eta > 0 the strong order on the shared path is 1 as well (as ddpm's)."""
        return 1.0

    def noise_source(
        self, dynamics: Dynamics, grid: Grid, x: Tensor, options: dict[str, Any]
    ) -> Callable[[int], Tensor] | None:
        """No noise at eta = 0 (the noise options are dropped unread); else StepNoise's."""
        if options.get("eta", 0.0) == 0.0:
            for k in NOISE_OPTIONS:
                options.pop(k, None)
            return None
        return super().noise_source(dynamics, grid, x, options)

    def build(self, nodes: list[Node], form: str, *, lower_order_final: bool, eta: float = 0.0) -> Plan:
        steps = [ddim_step(nodes[i], nodes[i + 1], float(eta)) for i in range(len(nodes) - 1)]
        return Plan(steps, keep=1)


register(DDIM())
