"""UniPC (Zhao et al. 2023): a multistep predictor UniP-p and a corrector UniC-p that reuses the next evaluation.

With hh = −h (data form, m = x̂0) or h (noise form, m = ε), c = α_t or σ_t, r_k = (λ_{s_k} − λ_s)/h:
  x_t = a x_s − c (e^{hh} − 1) m_0 − c B(h) Σ_k ρ_k (m_k − m_0)/r_k,
with B(h) = hh (bh1) or e^{hh} − 1 (bh2) and ρ solving Σ_k ρ_k r_k^{i−1} = i! hh φ_{i+1}(hh)/B(h), i = 1…p.
The corrector takes r = 1 for the new evaluation at t, so the whole method costs one evaluation per step;
there is no corrector after the last step (it would need one more evaluation).
"""

from __future__ import annotations

import math

from ...errors import SolverError
from ..base import register
from .base import COMMON_OPTIONS, ExpSolver, Plan, StepPlan, check_choice, check_order, step_orders
from .coeffs import Combo, Node, check_form, to_zero
from .phi import phi

VARIANTS = ("bh1", "bh2")


def _rhs(hh: float, b_h: float, p: int) -> list[float]:
    """b_i = i! hh φ_{i+1}(hh) / B(h), i = 1…p."""
    return [math.factorial(i) * hh * phi(i + 1, hh) / b_h for i in range(1, p + 1)]


def _solve(rks: list[float], rhs: list[float]) -> list[float]:
    """ρ with Σ_k ρ_k r_k^{i−1} = rhs_i, i = 1…n (n ≤ 3): Gaussian elimination with partial pivoting in float64."""
    n = len(rks)
    rows = [[r**i for r in rks] + [rhs[i]] for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda i: abs(rows[i][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for i in range(col + 1, n):
            f = rows[i][col] / rows[col][col]
            rows[i] = [a - f * b for a, b in zip(rows[i], rows[col])]
    out = [0.0] * n
    for i in reversed(range(n)):
        out[i] = (rows[i][n] - sum(rows[i][j] * out[j] for j in range(i + 1, n))) / rows[i][i]
    return out


def _linear(form: str, s: Node, t: Node, variant: str) -> tuple[float, float, float, float]:
    """(a, c, hh, B(h)) of UniPC's step s → t."""
    h = t.lam - s.lam
    if form == "data":
        a, c, hh = t.sigma / s.sigma, t.alpha, -h
    else:
        a, c, hh = t.alpha / s.alpha, t.sigma, h
    return a, c, hh, (hh if variant == "bh1" else math.expm1(hh))


def unip(form: str, history: list[Node], t: Node, variant: str) -> Combo:
    """UniP-p with p = len(history): weights on m_0 (at s = history[0]), m_1, …"""
    s, p = history[0], len(history)
    if t.zero:
        return to_zero(form, s)
    a, c, hh, b_h = _linear(form, s, t, variant)
    h = t.lam - s.lam
    rks = [(n.lam - s.lam) / h for n in history[1:]]
    w0 = -c * math.expm1(hh)
    if p == 1:
        return Combo(a, (w0,))
    rhos = [0.5] if p == 2 else _solve(rks, _rhs(hh, b_h, p))
    ws = [-c * b_h * rho / r for rho, r in zip(rhos, rks)]
    return Combo(a, (w0 - sum(ws),) + tuple(ws))


def unic(form: str, history: list[Node], t: Node, variant: str) -> Combo:
    """UniC-p, p = len(history): weights on the new output m_t, then m_0 (at s = history[0]), m_1, …"""
    s, p = history[0], len(history)
    a, c, hh, b_h = _linear(form, s, t, variant)
    h = t.lam - s.lam
    rks = [(n.lam - s.lam) / h for n in history[1:]] + [1.0]
    rhos = [0.5] if p == 1 else _solve(rks, _rhs(hh, b_h, p))
    ws = [-c * b_h * rho / r for rho, r in zip(rhos, rks)]  # the last one is the new output's (r = 1)
    w0 = -c * math.expm1(hh) - sum(ws)
    return Combo(a, (ws[-1], w0) + tuple(ws[:-1]))


class UniPC(ExpSolver):
    """UniPC-p with the B(h) variants bh1/bh2, on x̂0 (default) or ε; order p + 1 with the corrector."""

    name = "unipc"
    order = 3
    form = "data"
    options = COMMON_OPTIONS + ("order", "variant", "prediction", "corrector")
    description = (
        "UniPC: UniP-p predictor + UniC-p corrector reusing the next evaluation (1 evaluation per step); "
        "order= 1…3 (p, default 2; order p+1 with the corrector), variant= bh1 | bh2 (default), "
        "prediction= data (default) | noise, corrector= True"
    )

    def form_of(self, options: dict) -> str:
        return check_form(options.get("prediction", "data"))

    def build(
        self, nodes: list[Node], form: str, *, lower_order_final: bool, order: int = 2, variant: str = "bh2",
        prediction: str = "data", corrector: bool = True,
    ) -> Plan:
        order = check_order(order, 1, 3, self.name)
        check_choice("variant", variant, VARIANTS, self.name)
        if not isinstance(corrector, bool):
            raise SolverError(f"unipc: corrector must be True or False, got {corrector!r}")
        steps = len(nodes) - 1
        orders = step_orders(order, steps, lower_order_final)
        if nodes[-1].zero:
            orders[-1] = 1  # to σ = 0: x̂0 itself (B(h) = hh = −∞ would give NaN, as in diffusers' bh1)
        plan: list[StepPlan] = []
        for i, k in enumerate(orders):
            corr = None
            if corrector and i > 0:
                prev_k = orders[i - 1]
                corr = unic(form, [nodes[i - 1 - j] for j in range(prev_k)], nodes[i], variant)
            pred = unip(form, [nodes[i - j] for j in range(k)], nodes[i + 1], variant)
            plan.append(StepPlan(predict=pred, correct=corr))
        return Plan(plan, keep=order + 1, info={"orders": orders})


register(UniPC())
