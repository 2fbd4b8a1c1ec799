"""Differentiable solves: the step x ← a_i·x + Σ_j w_ij m_j with a, w tensors, for the one-evaluation-per-node solvers.

A weighted plan is the solver's own plan (the same `build`, the same formulas: coeffs.py, scalar.py) compiled from
nodes whose α, σ, λ are 0-d float64 tensors — functions of step times that may require grad (diffsolve.points.
differentiable_points). Its a_i and w_ij are then tensors, and the one step loop (base.run) combines out of place:
autograd reaches the step times through the coefficients and, at decoupled evaluation points, through the network's
time input and the prediction's conversion (α, σ at t′_i). The network's weights are not touched; its inputs are.
A plan's combinations may be replaced by other tensors (`with_combos`: learned weights) and run by the same loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.utils.checkpoint import checkpoint as recompute

from ...dynamics import Dynamics
from ...errors import SolverError
from ...points import Point
from ..base import Solver, get_solver, zero_end_state
from .base import ExpSolver, Plan, StepPlan, nodes_of, plan_options, run
from .coeffs import Combo
from .threshold import Prediction, prediction_fn


def differentiable_solver(solver: str | Solver) -> ExpSolver:
    """The solver, if it has a weighted plan: an exponential integrator that calls the model once per grid node."""
    method = get_solver(solver)
    if not (isinstance(method, ExpSolver) and method.evaluates_at_nodes):
        raise SolverError(f"solver {method.name!r} has no differentiable plan (only the one-evaluation-per-node "
                          f"solvers do: ddim, dpm2m/3m, dpmpp2m/3m, deis, unipc, ipndm, ipndm_v); pick one of them")
    return method


def weighted_plan(solver: str | Solver, points: list[Point], options: dict[str, Any]) -> tuple[Plan, str]:
    """(the solver's plan over `points` with tensor coefficients, the form it integrates); `options` as a solve's."""
    method = differentiable_solver(solver)
    opts = plan_options(options)  # ddim's noise sources are unused by a deterministic (eta = 0) solve
    if opts.get("eta", 0.0) != 0.0:
        raise SolverError(f"ddim with eta={opts['eta']} is stochastic; a differentiable solve needs eta=0")
    form = method.form_of(opts)
    to_zero = opts.pop("to_zero", False)
    return method.compile(nodes_of(points, to_zero), len(points) - 1, form, **opts), form


def with_combos(plan: Plan, combos: list[Combo]) -> Plan:
    """`plan` with its combinations (in `plan.combos()` order: corrector, predictor per step) replaced."""
    if len(combos) != len(plan.combos()):
        raise SolverError(f"a plan of {len(plan.combos())} combinations cannot take {len(combos)}; give one per "
                          f"combination, in plan.combos() order")
    if any(step.stages for step in plan.steps):
        raise SolverError("a plan with intermediate stages (singlestep) has no replaceable weights here")
    it = iter(combos)
    steps = []
    for step in plan.steps:
        correct = next(it) if step.correct is not None else None
        steps.append(StepPlan(predict=next(it), correct=correct, noise_std=step.noise_std))
    return Plan(steps, plan.keep, dict(plan.info))


def checkpointed(fn: Prediction) -> Prediction:
    """fn with its activations dropped after the forward pass and recomputed in the backward one (memory per call
    bounded by one network evaluation; the recomputation is one more call, counted by the model)."""
    def call(x: Tensor, p: Point) -> Tensor:
        return recompute(fn, x, p, use_reentrant=False)
    return call


def solve_weighted(
    dynamics: Dynamics, x: Tensor, points: list[Point], solver: str | Solver, *,
    eval_points: list[Point] | None = None, plan: Plan | None = None, checkpoint: bool = False,
    wrap: Callable[[Prediction], Prediction] | None = None, **options: Any,
) -> Tensor:
    """x at points[-1] from x at points[0] (the model's coordinates), by `solver`'s plan over `points` — or `plan`,
    e.g. with learned weights — evaluating the network at `eval_points` (default `points`). Differentiable in
    every tensor the points or the plan hold; `checkpoint` recomputes each network call in the backward pass;
    `wrap` wraps the prediction function (e.g. to count calls). One host sync at the end (the finite checks)."""
    model = dynamics.model
    if model is None:
        raise SolverError("a differentiable solve needs a model-backed ODE: pass diffsolve.ode(model, 'lambda')")
    if plan is None:
        plan, form = weighted_plan(solver, points, options)
    else:
        form = differentiable_solver(solver).form_of(dict(options))
    fn = prediction_fn(model, form, options.get("threshold"), options.get("threshold_max", 1.0))
    fn = checkpointed(fn) if checkpoint else fn
    fn = wrap(fn) if wrap is not None else fn
    model.finite_checks.clear()
    x_end, _ = run(fn, model.to_vp(x, points[0]), eval_points or points, plan, False)
    if options.get("to_zero"):
        x_end = zero_end_state(model, x_end, points[-1])  # the user receives x̂0 itself
    model.raise_if_not_finite()
    return model.from_vp(x_end, points[-1])
