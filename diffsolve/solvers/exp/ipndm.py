"""iPNDM (Zhang & Chen 2023): Adams–Bashforth on the DDIM ODE dx̄/dσ̄ = ε, with lower-order warm-up.

In VP coordinates a step σ̄_s → σ̄_t (h = σ̄_t − σ̄_s) reads x_t = α_t (x_s/α_s + h Σ_j c_j ε_{i−j}):
- ipndm:   the fixed coefficients of uniform steps, c = [1], [3, −1]/2, [23, −16, 5]/12, [55, −59, 37, −9]/24,
           order k_i = min(order, i + 1) at step i (the published method; on non-uniform grids its order is
           what the registry's order test measures);
- ipndm_v: variable-step Adams–Bashforth: c_j = (1/h)∫ L_j over [σ̄_s, σ̄_t], L_j the Lagrange basis on the
           last k_i nodes in σ̄ — exact for polynomials in σ̄ of degree < k_i on any grid.
One evaluation per step.
"""

from __future__ import annotations

from typing import Any

from ...checks import Option
from ..base import register
from ..contract import Integrates
from .base import COMMON, FIXED_ORDER_FINAL, ExpSolver, Plan, StepPlan, step_orders
from .coeffs import Combo, Node, lagrange_coefficients

DDIM_ODE_IN_SIGMA = Integrates(
    "the model-backed DDIM ODE dx̄/dσ̄ = ε stepped in σ̄",
    "pass diffsolve.ode(model, 'sigma'): Adams–Bashforth steps in σ̄ whatever the dynamics' variable says",
    variables=("sigma",), model=True, semilinear=True,
)

FIXED = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


def _sigma_bar(n: Node) -> float:
    return 0.0 if n.zero else n.sigma / n.alpha


def variable_ab(history: list[Node], t: Node) -> tuple[float, ...]:
    """c_j = ∫_0^1 L_j(v) dv with nodes v_j = (σ̄_{i−j} − σ̄_s)/h: variable-step Adams–Bashforth weights."""
    s = _sigma_bar(history[0])
    h = _sigma_bar(t) - s
    basis = lagrange_coefficients([(_sigma_bar(n) - s) / h for n in history])
    return tuple(sum(c / (k + 1) for k, c in enumerate(row)) for row in basis)


def ab_step(history: list[Node], t: Node, coefficients: tuple[float, ...]) -> Combo:
    """x_t = (α_t/α_s) x_s + α_t h Σ_j c_j ε_j (noise form, newest output first)."""
    s = history[0]
    h = _sigma_bar(t) - _sigma_bar(s)
    return Combo(t.alpha / s.alpha, tuple(t.alpha * h * c for c in coefficients))


class IPNDM(ExpSolver):
    """iPNDM / iPNDM-v: Adams–Bashforth of order ≤ 4 in σ̄ on ε, fixed or variable-step coefficients."""

    form = "noise"
    family = "adams-bashforth"
    integrates = DDIM_ODE_IN_SIGMA
    # lower_order_final off by default: worse at NFE ≥ 6 on gmm-64/gmm-2d/toy-2d (1.1–1.6; better on digits, RESULTS.md)
    schema = (FIXED_ORDER_FINAL,) + COMMON[1:] + (
        Option("order", "int", 4, "the highest Adams–Bashforth order (warm-up below it)", low=1, high=4),)

    def __init__(self, name: str, variable_step: bool):
        self.name, self.variable_step, self.order = name, variable_step, 4
        kind = "variable-step" if variable_step else "fixed (uniform-step)"
        self.description = (
            f"iPNDM: Adams–Bashforth in σ̄ on ε with {kind} coefficients, order= 1…4 (default 4) with "
            f"lower-order warm-up, one evaluation per step"
        )

    def order_for(self, **options: Any) -> float:
        """ipndm_v: `order` (capped at 2 by lower_order_final); ipndm: 2 at most — its uniform-step weights make an
        O(h) error in the weights on any grid that is not uniform in σ̄, which caps the global order at 2."""
        order = super().order_for(**options)
        return order if self.variable_step else min(order, 2.0)

    def build(self, nodes: list[Node], form: str, *, lower_order_final: bool, order: int = 4) -> Plan:
        orders = step_orders(order, len(nodes) - 1, lower_order_final)
        plan = []
        for i, k in enumerate(orders):
            history = [nodes[i - j] for j in range(k)]
            coefficients = variable_ab(history, nodes[i + 1]) if self.variable_step else FIXED[k]
            plan.append(StepPlan(predict=ab_step(history, nodes[i + 1], coefficients)))
        return Plan(plan, keep=order, info={"orders": orders})


register(IPNDM("ipndm", variable_step=False))
register(IPNDM("ipndm_v", variable_step=True))
