"""Shared machinery of the exponential integrators: nodes, options, and the one step loop.

A fixed-step exponential integrator is compiled, before the loop, into a `Plan`: for every step an
optional corrector and a predictor, each x_new = a·x + Σ_j w_j m_j over the newest model outputs, with
Python-float coefficients computed in float64. The loop then only calls the model and combines tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ...dynamics import Dynamics
from ...errors import SolverError
from ...grids import Grid
from ...points import Point
from ..base import Solver, freeze, node_points
from .coeffs import ZERO, Combo, Node, check_form
from .threshold import Prediction, check_threshold, prediction_fn

COMMON_OPTIONS = ("lower_order_final", "to_zero", "threshold", "threshold_max")


@dataclass
class StepPlan:
    """One step: correct x_i with the evaluation at node i (optional), then predict x_{i+1}."""

    predict: Combo
    correct: Combo | None = None
    noise_std: float = 0.0


@dataclass
class Plan:
    steps: list[StepPlan]
    keep: int  # model outputs to remember
    info: dict[str, Any] = field(default_factory=dict)


def nodes_of(points: list[Point], to_zero: bool) -> list[Node]:
    """Nodes (α, σ, λ) at the grid times, plus the clean end σ = 0 when the last step goes to zero."""
    nodes = [Node(p.alpha, p.sigma, p.lam) for p in points]
    return nodes + [ZERO] if to_zero else nodes


def step_orders(order: int, steps: int, lower_order_final: bool) -> list[int]:
    """Order of each step: warm-up min(order, i+1); with lower_order_final also ≤ steps − i (last step first order)."""
    out = []
    for i in range(steps):
        k = min(order, i + 1)
        if lower_order_final:
            k = min(k, steps - i)
        out.append(k)
    return out


def combine(x: Tensor | None, combo: Combo, ms: list[Tensor]) -> Tensor:
    """a·x + Σ_j w_j m_j as fused tensor ops with Python-float coefficients."""
    out = None if (x is None or combo.a == 0.0) else x.mul(combo.a)
    for w, m in zip(combo.w, ms):
        if w == 0.0:
            continue
        out = m.mul(w) if out is None else out.add_(m, alpha=w)
    if out is None:
        raise SolverError("internal: an exponential step with no terms")
    return out


def check_choice(name: str, value: Any, valid: tuple[Any, ...], solver: str) -> None:
    if value not in valid:
        raise SolverError(
            f"solver {solver!r}: {name}={value!r} is not valid; choose one of {', '.join(map(repr, valid))}"
        )


def check_order(order: Any, low: int, high: int, solver: str) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or not low <= order <= high:
        raise SolverError(f"solver {solver!r} takes order={low}…{high}, got {order!r}")
    return order


class ExpSolver(Solver):
    """Base of the fixed-step exponential integrators (DDIM, DPM-Solver(++) multistep, DEIS, UniPC)."""

    options = COMMON_OPTIONS

    def nfe_for(self, steps: int) -> int:
        """One evaluation per step (to_zero=True adds one more: the step to σ = 0)."""
        return steps

    def build(self, nodes: list[Node], form: str, **options: Any) -> Plan:
        """Compile the step plan for these nodes (the last step ends on nodes[-1])."""
        raise NotImplementedError

    def form_of(self, options: dict[str, Any]) -> str:
        return self.form  # type: ignore[attr-defined]

    def integrate(
        self, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool,
        lower_order_final: bool = False, to_zero: bool = False,
        threshold: float | None = None, threshold_max: float = 1.0, generator: torch.Generator | None = None,
        **options: Any,
    ) -> tuple[Tensor, list[Tensor]]:
        model = dynamics.model
        if model is None:
            raise SolverError(f"solver {self.name!r} integrates a model's ODE; {dynamics!r} has no model")
        check_threshold(threshold, threshold_max)
        for flag, value in (("lower_order_final", lower_order_final), ("to_zero", to_zero)):
            if not isinstance(value, bool):
                raise SolverError(f"solver {self.name!r}: {flag} must be True or False, got {value!r}")
        form = check_form(self.form_of(options))
        points = node_points(dynamics, grid)
        nodes = nodes_of(points, bool(to_zero))
        # keyed by the solver object (compared by value) and every option that shapes the plan
        key = ("exp-plan", self, form, bool(to_zero), bool(lower_order_final), freeze(options))
        plan = grid.memo(key, lambda: self.build(nodes, form, lower_order_final=bool(lower_order_final), **options))
        fn = prediction_fn(model, form, threshold, threshold_max)
        x_end, trajectory = run(fn, x, points, plan, record, generator)
        if to_zero and model.coords == "ve":
            x_end = x_end * points[-1].alpha  # solve() maps back with 1/α(t_end): the user receives x̂0 itself
        return x_end, trajectory


def run(
    fn: Prediction, x: Tensor, points: list[Point], plan: Plan, record: bool, generator: torch.Generator | None
) -> tuple[Tensor, list[Tensor]]:
    """The step loop: evaluate, correct, predict. Pure tensor arithmetic with precomputed Python floats."""
    history: list[Tensor] = []
    trajectory: list[Tensor] = []
    x_prev: Tensor | None = None
    grid_steps, n = len(points) - 1, len(plan.steps)
    for i, step in enumerate(plan.steps):
        m = fn(x, points[i])
        if step.correct is not None:
            x = combine(x_prev, step.correct, [m] + history)
            if record:
                trajectory[-1] = x
        history = [m] + history[: plan.keep - 1]
        # the state before the step is kept only when the next step corrects it (UniPC): one state less in memory
        x_prev = x if i + 1 < n and plan.steps[i + 1].correct is not None else None
        x = combine(x, step.predict, history)
        if step.noise_std > 0.0:
            x = x.add_(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype), alpha=step.noise_std)
        if record and i < grid_steps:
            trajectory.append(x)
    return x, trajectory
