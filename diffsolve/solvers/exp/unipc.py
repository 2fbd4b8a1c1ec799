"""UniPC (Zhao et al. 2023): a multistep predictor UniP-p and a corrector UniC-p that reuses the next evaluation.

With hh = −h (data form, m = x̂0) or h (noise form, m = ε), c = α_t or σ_t, r_k = (λ_{s_k} − λ_s)/h:
  x_t = a x_s − c (e^{hh} − 1) m_0 − c B(h) Σ_k ρ_k (m_k − m_0)/r_k,
with B(h) = hh (bh1) or e^{hh} − 1 (bh2) and ρ solving Σ_k ρ_k r_k^{i−1} = i! hh φ_{i+1}(hh)/B(h), i = 1…p.
The corrector takes r = 1 for the new evaluation at t, so the whole method costs one evaluation per step;
there is no corrector after the last step (it would need one more evaluation).
"""

from __future__ import annotations

import math
from typing import Any

from ...checks import Option
from ...errors import SolverError
from ..base import register
from .base import COMMON, ExpSolver, Plan, StepPlan, form_option, step_orders
from .coeffs import Combo, Node, to_zero
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
    """UniPC: predictor UniP-p, and (corrector=True) UniC-p reusing the next evaluation, which raises the order
    to p + 1. `order` is that convergence order: p = order − 1 with the corrector, p = order without."""

    name = "unipc"
    order = 3
    form = "data"
    schema = COMMON + (
        Option("order", "int", 3, "the convergence order: p + 1 with the corrector (2…4), p without it (1…3)",
               low=1, high=4),
        Option("variant", "choice", "bh2", "B(h) = hh (bh1) or e^hh − 1 (bh2)", choices=VARIANTS),
        form_option("data"),
        Option("corrector", "bool", True, "apply UniC after each predictor step (free: it reuses the next evaluation)"),
    )
    renamed = {"prediction": "form (order now means the convergence order: old order=p is order=p+1)"}
    description = (
        "UniPC: UniP-p predictor + UniC-p corrector reusing the next evaluation (1 evaluation per step); "
        "order= convergence order (default 3: p = 2 with the corrector), variant= bh1 | bh2 (default), "
        "form= data (default) | noise, corrector= True"
    )

    def check_together(self, options: dict[str, Any]) -> None:
        order, corrector = options.get("order", 3), options.get("corrector", True)
        if corrector and order < 2:
            raise SolverError(f"solver 'unipc': order={order} with the corrector is not possible (UniC-p has order "
                              f"p + 1 ≥ 2); use order=2…4, or corrector=False for order 1")
        if not corrector and order > 3:
            raise SolverError(f"solver 'unipc': order={order} without the corrector is not possible (UniP-p has "
                              f"order p ≤ 3); use order=1…3, or the corrector for order 4")

    def build(
        self, nodes: list[Node], form: str, *, lower_order_final: bool, order: int = 3, variant: str = "bh2",
        corrector: bool = True,
    ) -> Plan:
        p = order - 1 if corrector else order
        steps = len(nodes) - 1
        orders = step_orders(p, steps, lower_order_final)
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
        return Plan(plan, keep=p + 1, info={"orders": orders})


register(UniPC())
