"""Learned multistep solvers: a one-evaluation-per-step method's own plan with its combinations' weights replaced.

Step i of the base method is x ← a_i·x + Σ_j w⁰_ij m_j (m_j the stored model outputs, newest first; a UniPC corrector is
one more such combination). The learned solver keeps a_i (the exact linear part) and the loop, and uses
  w_i = w⁰_i + f_i·P Δ_i,   f_i = Σ_j w⁰_ij (the first-order, DDIM weight of the step),
with Δ_i learned (dimensionless) and P the orthogonal projection on {Σ_j v_j = 0}: every step keeps Σ_j w_ij = f_i, so
it stays consistent (at least first order). No higher-order condition is kept by default (conditions=1); with
conditions=2, P also keeps the first moment Σ_j w_ij (u_j − u_i) of the base weights, u the node's position in the
variable the base method steps in (λ; σ̄ for iPNDM), so a step whose base order is ≥ 2 stays second order.
Δ = 0 (or deltas=None) is the base method bit for bit. The weights are floats on a solve's plan, and 0-d tensors when
Δ (or the nodes) are tensors: a differentiable plan (weighted.py) that the tuner learns (diffsolve.tuning).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from torch import Tensor

from ...dynamics import Dynamics
from ...errors import SolverError
from ...grids import Grid
from ..base import Solver, get_solver
from .base import ExpSolver, Plan, nodes_of
from .coeffs import Combo, Node
from .ddim import DDIM
from .scalar import Scalar
from .weighted import with_combos

CONDITIONS = (1, 2)  # 1: consistency (Σ w = the first-order weight); 2: also the base weights' first moment
PREDICTION_OPTIONS = ("threshold", "threshold_max")  # options that act on the model's output, not on the weights


def learnable(solver: str | Solver) -> ExpSolver:
    """The base method of a learned solver: an exponential integrator or iPNDM with one evaluation per grid node and
    more than one stored output (ipndm, ipndm_v, dpm2m/3m, dpmpp2m/3m, deis, unipc)."""
    method = get_solver(solver)
    if isinstance(method, LearnedMultistep):
        return method.base
    if not (isinstance(method, ExpSolver) and method.evaluates_at_nodes) or isinstance(method, DDIM) \
            or method.stochastic:
        raise SolverError(f"solver {method.name!r} has no learnable multistep weights (a learned solver reweights the "
                          f"stored outputs of a one-evaluation-per-step multistep method); use ipndm, ipndm_v, "
                          f"dpmpp2m, dpmpp3m, dpm2m, dpm3m, deis or unipc")
    return method


def project(delta: Sequence[Scalar], positions: Sequence[Scalar] | None = None) -> list[Scalar]:
    """P Δ: Δ minus its mean (Σ = 0), and with `positions` u also minus its component along u − ū (first moment 0)."""
    k = len(delta)
    mean = sum(delta) / k
    out = [d - mean for d in delta]
    if positions is None or k < 2:
        return out
    centre = sum(positions) / k
    u = [p - centre for p in positions]
    c = sum(ui * oi for ui, oi in zip(u, out)) / sum(ui * ui for ui in u)
    return [oi - c * ui for oi, ui in zip(out, u)]


def reweighted(combo: Combo, delta: Sequence[Scalar], positions: Sequence[Scalar] | None) -> Combo:
    """The combination with w = w⁰ + f·P Δ, f = Σ w⁰ (a unchanged)."""
    if len(delta) != len(combo.w):
        raise SolverError(f"internal: {len(delta)} learned weights for a combination of {len(combo.w)}")
    first = sum(combo.w)
    return Combo(combo.a, tuple(w + first * p for w, p in zip(combo.w, project(delta, positions))))


def position(node: Node, in_sigma_bar: bool) -> Scalar:
    """Where a node sits in the variable the base method steps in: σ̄ = σ/α (iPNDM) or λ."""
    return node.sigma / node.alpha if in_sigma_bar else node.lam


class LearnedMultistep(ExpSolver):
    """A base multistep method with learned weights on its stored outputs (see the module doc), for one grid size.

    `options`: the base method's options it was learned with (its schema's defaults here; a call may repeat them or
    set the prediction options threshold/threshold_max, but not change them: the weights hold for these alone).
    `deltas`: Δ per combination in the plan's order (corrector, predictor per step), None for the base weights."""

    family = "learned"
    evaluates_at_nodes = True

    def __init__(self, base: str | Solver, options: dict[str, Any] | None = None,
                 deltas: Sequence[Sequence[Scalar]] | None = None, conditions: int = 1):
        method = learnable(base)
        given = dict(options or {})
        method.check_options(given)
        if conditions not in CONDITIONS:
            raise SolverError(f"conditions must be 1 (consistency: Σ_j w_ij = the first-order weight) or 2 (also the "
                              f"base weights' first moment), got {conditions!r}")
        self.base, self.conditions = method, int(conditions)
        self.learned_options = {o.name: given.get(o.name, o.default) for o in method.schema}
        self.deltas = None if deltas is None else tuple(tuple(d) for d in deltas)
        self.name = f"learned-{method.name}"
        self.form = method.form_of(dict(given))
        self.integrates = method.integrates_for(**given)
        self.order = method.order_for(**given)
        self.schema = tuple(replace(o, default=self.learned_options[o.name]) for o in method.schema)
        self.description = (f"{method.name} with learned weights on its stored outputs (each step consistent: Σ w = "
                            f"the first-order weight{'; first moment kept' if conditions == 2 else ''}), "
                            f"{'unlearned' if self.deltas is None else f'{len(self.deltas)} combinations'}")

    @property
    def learned(self) -> bool:
        """Whether some Δ is not zero (deltas of floats); tensor deltas (a plan being learned) count as learned."""
        return self.deltas is not None and any(isinstance(v, Tensor) or v != 0.0 for d in self.deltas for v in d)

    def check_together(self, options: dict[str, Any]) -> None:
        """The base method's rules, and no option that changes the weights away from those it was learned with."""
        changed = sorted(k for k, v in options.items()
                         if k not in PREDICTION_OPTIONS and v != self.learned_options.get(k))
        if changed:
            shown = ", ".join(f"{k}={options[k]!r} (learned with {self.learned_options.get(k)!r})" for k in changed)
            raise SolverError(f"solver {self.name!r} was learned with other options: {shown}; its weights hold for "
                              f"those alone: drop {', '.join(changed)}, or learn again with them")
        self.base.check_together({**self.learned_options, **options})

    def order_for(self, **options: Any) -> float:
        """Unlearned: the base method's order; learned: 1 (consistency), or min(2, base) with conditions=2."""
        base = self.base.order_for(**{**self.learned_options, **options})
        if not self.learned:
            return base
        return 1.0 if self.conditions == 1 else min(2.0, base)

    def form_of(self, options: dict[str, Any]) -> str:
        options.pop("form", None)
        return self.form

    def integrate(self, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool,
                  **options: Any) -> tuple[Tensor, list[Tensor]]:
        """ExpSolver.integrate with the options it was learned with (a call's prediction options over them)."""
        return super().integrate(dynamics, x, grid, record=record, **{**self.learned_options, **options})

    def compile(self, nodes: list[Node], steps: int, form: str, **options: Any) -> Plan:
        """The base method's plan over `nodes`, its combinations reweighted by Δ."""
        shaping = {k: v for k, v in {**self.learned_options, **options}.items()
                   if k not in PREDICTION_OPTIONS + ("to_zero", "form")}
        plan = self.base.compile(nodes, steps, self.form, **shaping)
        if self.deltas is None:
            return plan
        combos = plan.combos()
        sizes = [len(c.w) for c in combos]
        if [len(d) for d in self.deltas] != sizes:
            raise SolverError(f"solver {self.name!r} was learned for another grid: its weights fit {len(self.deltas)} "
                              f"combinations of {[len(d) for d in self.deltas]} outputs, this grid of {steps} steps "
                              f"has {len(sizes)} of {sizes}; use the grid it was learned on (its file's), or learn "
                              f"one for {steps} steps")
        return with_combos(plan, [reweighted(c, d, self.positions(nodes, i, len(c.w)))
                                  for c, d, i in zip(combos, self.deltas, combo_steps(plan))])

    def plan_on(self, grid: Grid) -> Plan:
        """The float plan on `grid` with the options it was learned with (a step to σ = 0 included)."""
        to_zero = bool(self.learned_options.get("to_zero"))
        return self.compile(nodes_of(grid.points, to_zero), grid.steps, self.form)

    def positions(self, nodes: list[Node], step: int, size: int) -> list[Scalar] | None:
        """The positions of the outputs a combination of step `step` weighs (nodes step, step − 1, …), or None
        (conditions=1)."""
        if self.conditions == 1:
            return None
        in_sigma_bar = self.integrates.variables == ("sigma",)
        return [position(nodes[step - j], in_sigma_bar) for j in range(size)]


def combo_steps(plan: Plan) -> list[int]:
    """The step index of each combination in plan.combos() order (a step's corrector and predictor weigh the outputs
    at nodes i, i − 1, …)."""
    return [i for i, step in enumerate(plan.steps) for _ in range(1 + (step.correct is not None))]


def plan_sizes(plan: Plan) -> list[int]:
    """The number of outputs each combination weighs, in plan.combos() order."""
    return [len(c.w) for c in plan.combos()]
