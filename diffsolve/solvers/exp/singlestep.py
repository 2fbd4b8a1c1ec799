"""Singlestep DPM-Solver (Lu et al. 2022a, ε) and DPM-Solver++(2S) (Lu et al. 2022b, x̂0).

A step of order k evaluates at s and at k − 1 intermediate λ_s + r_j h (r = ½ for k = 2; ⅓, ⅔ for k = 3):
  k = 2:  u = DDIM(s → s₁);  x_t = a x + c h φ₁(z) m_s + c h φ₁(z)/(2r₁) (m₁ − m_s)
  k = 3:  u₁ = DDIM(s → s₁); u₂ = DDIM(s → s₂) + c₂ h₂ φ₂(z₂) (r₂/r₁) (m₁ − m_s);
          x_t = a x + c h φ₁(z) m_s + c h φ₂(z)/r₂ (m₂ − m_s)
(a, c, z as in coeffs.py). Given an NFE budget K the order pattern is the paper's: for order 3,
[3,…,3,2,1] (K ≡ 0 mod 3), [3,…,3,1] (K ≡ 1), [3,…,3,2] (K ≡ 2); for order 2, [2,…,2(,1)].
A pattern reaches the order min(p, k + 1 for every lower order k in it), p its highest order: one step of
order k adds a local error O(h^{k+1}) (so [3,…,3,2,1] and [3,…,3,1] are second order, [3,…,3,2] third).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import torch

from ...checks import Option
from ...dynamics import Dynamics
from ...errors import SolverError
from ...grids import Grid
from ...points import Point, make_points
from ..base import node_points, register
from ..cache import time_values
from ..options import THRESHOLD
from .base import ExpSolver, Plan, Stage, StepPlan
from .coeffs import Combo, Node, first_order, linear_part
from .phi import phi

STAGE_R = {1: (), 2: (0.5,), 3: (1 / 3, 2 / 3)}


def node(p: Point) -> Node:
    return Node(p.alpha, p.sigma, p.lam)


def orders_for(order: int, nfe: int) -> list[int]:
    """DPM-Solver's order pattern spending exactly `nfe` evaluations with steps of order ≤ `order`."""
    if order == 3:
        q, rem = divmod(nfe, 3)
        return [3] * (q - 1) + [2, 1] if rem == 0 else [3] * q + [rem]
    if order == 2:
        return [2] * (nfe // 2) + [1] * (nfe % 2)
    return [1] * nfe


def pattern_order(pattern: list[int]) -> float:
    """The order a pattern of step orders reaches: its highest order p, capped at k + 1 by any lower-order step k."""
    top = max(pattern)
    return float(min([top] + [k + 1 for k in pattern if k < top]))


def stage_combos(form: str, order: int, s: Node, stages: list[Node], t: Node) -> list[Combo]:
    """Combos of the intermediate states and of x_t, over the outputs in evaluation order (m_s, m_1, m_2)."""
    if order == 1:
        return [first_order(form, s, t)]
    a, c, z, h = linear_part(form, s, t)
    base = c * h * phi(1, z)
    r1 = (stages[0].lam - s.lam) / h
    if order == 2:
        u1 = first_order(form, s, stages[0])
        return [u1, Combo(a, (base - base / (2 * r1), base / (2 * r1)))]
    r2 = (stages[1].lam - s.lam) / h
    u1 = first_order(form, s, stages[0])
    a2, c2, z2, h2 = linear_part(form, s, stages[1])
    d = c2 * h2 * phi(2, z2) * r2 / r1
    u2 = Combo(a2, (c2 * h2 * phi(1, z2) - d, d))
    e = c * h * phi(2, z) / r2
    return [u1, u2, Combo(a, (base - e, 0.0, e))]


def singlestep(form: str, order: int, s: Point, stages: list[Point], t: Point) -> StepPlan:
    """One step of DPM-Solver-`order` from s to t through the intermediate points `stages`."""
    combos = stage_combos(form, order, node(s), [node(p) for p in stages], node(t))
    return StepPlan(predict=combos[-1], stages=tuple(Stage(p, c) for p, c in zip(stages, combos[:-1])))


class DPMSinglestep(ExpSolver):
    """Singlestep DPM-Solver-k: k evaluations per step (pattern= or nfe= choose the order of each step)."""

    renamed = {"orders": "pattern"}
    evaluates_at_nodes = False  # its intermediate stages call the model between the nodes

    def __init__(self, name: str, order: int, form: str):
        self.name, self.order, self.form = name, order, form
        self.fixed = {"order": f"{order}; pattern=[…] sets the order of each step",
                      "form": f"{form!r}; dpm2 and dpm3 are the noise form, dpmpp2s the data form"}
        what = "ε (DPM-Solver)" if form == "noise" else "x̂0 (DPM-Solver++)"
        self.description = (
            f"singlestep exponential integrator of order {order} on {what}, {order} evaluations per step; "
            f"nfe=K spends exactly K with the pattern [{order},…,{order},…,1]; pattern=[…] sets it per step"
        )
        self.schema = (
            Option("pattern", "pattern", None, "the order of each step, one per grid step (default: all "
                   f"{order})", choices=tuple(range(1, order + 1)), optional=True),
            Option("nfe", "int", None, "spend exactly this NFE with the paper's pattern (sample(nfe=) passes it)",
                   low=1, optional=True),
        ) + THRESHOLD

    def check_together(self, options: dict[str, Any]) -> None:
        if options.get("pattern") is not None and options.get("nfe") is not None:
            raise SolverError(f"solver {self.name!r} takes pattern= or nfe=, not both")

    def order_for(self, **options: Any) -> float:
        """The order of the pattern used: nfe=K's ends in lower orders for some K (see the module docstring)."""
        if options.get("nfe") is not None:
            return pattern_order(orders_for(self.order, options["nfe"]))
        if options.get("pattern") is not None:
            return pattern_order(list(options["pattern"]))
        return float(self.order)

    def nfe_for(self, steps: int) -> int:
        return self.order * steps

    def budget_options(self, nfe: int) -> dict[str, Any]:
        """The pattern depends on the budget: pass nfe= so that it spends exactly `nfe`."""
        return {"nfe": nfe}

    def steps_for(self, nfe: int, **options: Any) -> int:
        """Outer steps of the pattern that spends exactly `nfe` evaluations."""
        if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
            raise SolverError(f"solver {self.name!r} needs an NFE budget of at least 1, got {nfe!r}")
        return len(orders_for(self.order, nfe))

    def pattern(self, steps: int, orders: list[int] | None, nfe: int | None) -> list[int]:
        """The order of each step, checked against the grid (the values were checked by the schema)."""
        if nfe is not None:
            orders = orders_for(self.order, nfe)
            if len(orders) != steps:
                raise SolverError(
                    f"solver {self.name!r} spends nfe={nfe} in {len(orders)} steps (orders {orders}), but the grid "
                    f"has {steps}; build the grid with steps=get_solver({self.name!r}).steps_for({nfe})"
                )
            return orders
        if orders is None:
            return [self.order] * steps
        orders = list(orders)
        if len(orders) != steps:
            raise SolverError(
                f"solver {self.name!r}: pattern={orders} must give one order in 1…{self.order} per grid step "
                f"({steps} steps); pass {steps} orders or a grid of {len(orders)} steps"
            )
        return orders

    def plan_values(self, grid: Grid) -> Hashable:
        """Stage times come from the schedule's t(λ) between the nodes: the schedule and the times."""
        return time_values(grid)

    def plan(self, dynamics: Dynamics, grid: Grid, form: str, *, pattern: list[int] | None = None,
             nfe: int | None = None) -> Plan:
        """Stage points t(λ_s + r h) for every step, then each step's combos (keep = 1: no memory across steps).

        The coefficients use the λ actually reached at a stage, so round-off in t(λ) moves the stage, never
        the consistency of the step."""
        pattern = self.pattern(grid.steps, pattern, nfe)
        points = node_points(dynamics, grid)
        lam = grid.lam
        stage_lams = [float(lam[i]) + r * float(lam[i + 1] - lam[i]) for i, k in enumerate(pattern) for r in STAGE_R[k]]
        stage_pts = make_points(dynamics.schedule, dynamics.schedule.t_from_lambda(torch.tensor(stage_lams,
                                                                                                dtype=torch.float64)))
        steps, j = [], 0
        for i, k in enumerate(pattern):
            steps.append(singlestep(form, k, points[i], stage_pts[j : j + k - 1], points[i + 1]))
            j += k - 1
        return Plan(steps, keep=1, info={"orders": pattern})


for _name, _order, _form in (("dpm2", 2, "noise"), ("dpm3", 3, "noise"), ("dpmpp2s", 2, "data")):
    register(DPMSinglestep(_name, _order, _form))
