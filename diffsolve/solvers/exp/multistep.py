"""Linear multistep exponential integrators: DPM-Solver-2M/3M (ε), DPM-Solver++(2M/3M) (x̂0), DEIS (tAB).

Step i uses the last k_i outputs m_i, m_{i−1}, … (k_i = min(order, i+1): lower-order warm-up) and
integrates the linear part exactly (see coeffs.py). One evaluation per step.
"""

from __future__ import annotations

from typing import Any

from ...checks import Option
from ..base import register
from .base import COMMON, ExpSolver, Plan, StepPlan, step_orders
from .coeffs import Combo, Node, dpm_multistep, lagrange

VARIANTS = {2: ("midpoint", "taylor"), 3: ("taylor", "diffusers")}
# 3M variant=None (auto): the published 'diffusers' weights below this many steps, 'taylor' (order 3) from it.
# Measured (benchmarks/lower_order_final.py data, gmm-64/gmm-2d/toy-2d × four grids): the geometric mean of
# err(taylor)/err(diffusers) is 1.02–1.27 at NFE 4–60 (with lower_order_final), 0.99 at 100, 0.91 at 150.
AUTO_3M_TAYLOR_FROM = 100


def multistep_plan(
    nodes: list[Node], form: str, order: int, lower_order_final: bool, interpolate: Any
) -> Plan:
    """Steps nodes[i] → nodes[i+1], each from the last k_i nodes' outputs via interpolate(form, history, t)."""
    steps = len(nodes) - 1
    orders = step_orders(order, steps, lower_order_final)
    if nodes[-1].zero:
        orders[-1] = 1  # the step to σ = 0 is the DDIM limit x̂0 (a higher order would divide by h = ∞)
    plan = []
    for i, k in enumerate(orders):
        history = [nodes[i - j] for j in range(k)]
        plan.append(StepPlan(predict=interpolate(form, history, nodes[i + 1])))
    return Plan(plan, keep=order, info={"orders": orders})


class DPMMultistep(ExpSolver):
    """Multistep DPM-Solver (noise form, Lu et al. 2022a) or DPM-Solver++ (data form, Lu et al. 2022b)."""

    def __init__(self, name: str, order: int, form: str):
        self.name, self.order, self.form = name, order, form
        family, other = ("dpmpp", "dpm") if form == "data" else ("dpm", "dpmpp")
        self.fixed = {"order": f"{order}; {family}{5 - order}m is order {5 - order}",
                      "form": f"{form!r}; {other}{order}m is the {'noise' if form == 'data' else 'data'} form"}
        # 3M: automatic for DPM-Solver++ (measured); taylor for the ε-form DPM-Solver-3M (unmeasured across problems;
        # the published weights were worse on the default suite's gmm-64 cells, e.g. 0.0874 vs 0.0845 at NFE 5)
        self.default_variant = "midpoint" if order == 2 else (None if form == "data" else "taylor")
        self.schema = COMMON + (Option(
            "variant", "choice", self.default_variant,
            "taylor: exact integral of the quadratic interpolant | diffusers: the published 3M (D2 halved: "
            "order 2 as h → 0)" + (f" | None: diffusers below {AUTO_3M_TAYLOR_FROM} steps, taylor from there"
                                   if self.default_variant is None else "")
            if order == 3 else "midpoint: Lu et al.'s 2M | taylor: exact integral of the linear interpolant",
            choices=VARIANTS[order], optional=self.default_variant is None),)
        what = "ε (DPM-Solver)" if form == "noise" else "x̂0 (DPM-Solver++)"
        self.description = (
            f"multistep exponential integrator of order {order} on {what}, one evaluation per step; "
            f"variant: {' | '.join(VARIANTS[order])} (default {self.default_variant or 'automatic'})"
        )

    def order_for(self, **options: Any) -> float:
        """The published 3M ('diffusers') halves the D2 term: order 2 as h → 0 (the automatic variant is taylor
        at the many steps where an order is fitted)."""
        order = super().order_for(**options)
        return min(order, 2.0) if options.get("variant") == "diffusers" else order

    def build(self, nodes: list[Node], form: str, *, lower_order_final: bool, variant: str | None = None) -> Plan:
        if variant is None:
            variant = self.default_variant or ("taylor" if len(nodes) - 1 >= AUTO_3M_TAYLOR_FROM else "diffusers")

        def interpolate(f: str, history: list[Node], t: Node) -> Combo:
            return dpm_multistep(f, history, t, variant)
        return multistep_plan(nodes, form, self.order, lower_order_final, interpolate)


class DEIS(ExpSolver):
    """DEIS tAB (Zhang & Chen 2023) in log ρ, ρ = σ̄: ε interpolated by a polynomial in λ through the last
    k outputs, x̄ = x/α integrated exactly in ρ. (Numerically the same method as DPM-Solver-kM, 'taylor' form.)"""

    name = "deis"
    order = 3
    form = "noise"
    schema = COMMON + (Option("order", "int", 3, "the order of the Adams–Bashforth interpolant", low=1, high=3),)
    description = "DEIS tAB in log ρ on ε, orders 1–3 (order=, default 3), one evaluation per step"

    def build(self, nodes: list[Node], form: str, *, lower_order_final: bool, order: int = 3) -> Plan:
        return multistep_plan(nodes, form, order, lower_order_final, lagrange)


for _name, _order, _form in (
    ("dpm2m", 2, "noise"), ("dpm3m", 3, "noise"), ("dpmpp2m", 2, "data"), ("dpmpp3m", 3, "data"),
):
    register(DPMMultistep(_name, _order, _form))
register(DEIS())
