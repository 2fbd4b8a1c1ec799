"""Shared machinery of the exponential integrators: the preamble, the plan, and the one step loop.

A fixed-step exponential integrator is compiled, before the loop, into a `Plan`: for every step an
optional corrector, optional intermediate stages (singlestep methods) and a predictor, each
x_new = a·x + Σ_j w_j m_j over the newest model outputs, with Python-float coefficients computed in float64.
The loop (`run`) then only calls the model and combines tensors; adaptive DPM-Solver takes the same steps
(`take_step`) under a step-size controller.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ...checks import Option
from ...dynamics import Dynamics
from ...errors import SolverError
from ...grids import Grid
from ...points import Point
from ...valuecache import value_key
from ..base import Solver, node_points, zero_end_state
from ..brownian import NOISE_OPTIONS
from ..cache import node_values, shared
from ..contract import EXPONENTIAL_ODE
from ..options import FORM_DOC, THRESHOLD, TO_ZERO
from .coeffs import FORMS, ZERO, Combo, Node
from .threshold import Prediction, prediction_fn

# lower_order_final=None (auto) turns it on below this many steps. Measured (RESULTS.md, "lower_order_final"):
# for dpmpp2m/3m, unipc, deis and dpm2m the geometric mean over gmm-64, gmm-2d and toy-2d and four grids of
# err(on)/err(off) is < 1 at every NFE 4–40 (0.25–0.97) and about 1 for deis and dpm2m from 60 steps.
AUTO_LOWER_ORDER_FINAL_BELOW = 50
LOWER_ORDER_FINAL = Option(
    "lower_order_final", "bool", None,
    "the last steps at order ≤ steps left (the last one first order); None: on below "
    f"{AUTO_LOWER_ORDER_FINAL_BELOW} steps", optional=True,
)
FIXED_ORDER_FINAL = Option(
    "lower_order_final", "bool", False,
    "the last steps at order ≤ steps left (the last one first order); off by default (measured worse here)",
    optional=True,
)
COMMON = (LOWER_ORDER_FINAL, TO_ZERO) + THRESHOLD


def form_option(default: str) -> Option:
    """`form`: integrate the network output as ε ('noise') or x̂0 ('data')."""
    return Option("form", "choice", default, FORM_DOC, choices=FORMS)


CALL_OPTIONS = (*NOISE_OPTIONS, "threshold", "threshold_max")  # used by a call (noise, prediction), not its plan


def plan_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options that shape a plan: all but a call's noise sources and thresholding (CALL_OPTIONS)."""
    return {k: v for k, v in options.items() if k not in CALL_OPTIONS}

@dataclass(frozen=True)
class Stage:
    """An intermediate evaluation inside a step: m_k = model(combo(x, m_0 … m_{k−1}), point)."""

    point: Point
    combo: Combo


@dataclass
class StepPlan:
    """One step: correct x_i with the evaluation at node i (optional), evaluate the stages (singlestep
    methods), then predict x_{i+1} from the stage outputs and the remembered ones; add noise_std·z if any."""

    predict: Combo
    correct: Combo | None = None
    stages: tuple[Stage, ...] = ()
    noise_std: float = 0.0


@dataclass
class Plan:
    steps: list[StepPlan]
    keep: int  # model outputs to remember
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.noisy = any(step.noise_std > 0.0 for step in self.steps)  # whether the loop needs a noise source
        # whether step i must keep its starting state: the next step corrects it (UniPC)
        self.keeps_state = [nxt.correct is not None for nxt in self.steps[1:]] + [False]
        # a differentiable plan (weighted.py): some coefficient is a tensor; the loop then combines out of place
        self.weighted = any(isinstance(v, Tensor) for combo in self.combos() for v in (combo.a, *combo.w))

    def combos(self) -> list[Combo]:
        """Every step's combinations in loop order: corrector, stages, predictor."""
        out: list[Combo] = []
        for step in self.steps:
            out += ([step.correct] if step.correct is not None else []) + [s.combo for s in step.stages]
            out.append(step.predict)
        return out


def nodes_of(points: list[Point], to_zero: bool) -> list[Node]:
    """Nodes (α, σ, λ) at the grid times, plus the clean end σ = 0 when the last step goes to zero."""
    nodes = [Node(p.alpha, p.sigma, p.lam) for p in points]
    return nodes + [ZERO] if to_zero else nodes


def resolve_lower_order_final(value: bool | None, steps: int) -> bool:
    """The option's value; None (auto): on when the grid has fewer than AUTO_LOWER_ORDER_FINAL_BELOW steps."""
    return steps < AUTO_LOWER_ORDER_FINAL_BELOW if value is None else bool(value)


def step_orders(order: int, steps: int, lower_order_final: bool) -> list[int]:
    """Order of each step: warm-up min(order, i+1); with lower_order_final also ≤ steps − i (last step first order)."""
    out = []
    for i in range(steps):
        k = min(order, i + 1)
        if lower_order_final:
            k = min(k, steps - i)
        out.append(k)
    return out


def weighted_combine(x: Tensor | None, combo: Combo, ms: list[Tensor]) -> Tensor:
    """a·x + Σ_j w_j m_j out of place, with 0-d tensor (or float) coefficients: differentiable in a and w, every term
    kept (a zero weight still has a gradient); only a Python-float a = 0 is dropped. The state's dtype is kept."""
    out = None if (x is None or (not isinstance(combo.a, Tensor) and combo.a == 0.0)) else x * combo.a
    for w, m in zip(combo.w, ms):
        out = m * w if out is None else out + m * w
    if out is None:
        raise SolverError("internal: an exponential step with no terms")
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


class ExpSolver(Solver):
    """Base of the exponential integrators: a model-backed semi-linear ODE stepped in λ (DDIM, DPM-Solver(++),
    DEIS, UniPC, adaptive DPM-Solver). `form` is the default form; solvers that offer both take a `form` option."""

    family = "exponential"
    evaluates_at_nodes = True
    integrates = EXPONENTIAL_ODE
    schema = COMMON
    form = "noise"

    def nfe_for(self, steps: int) -> int:
        """One evaluation per step (to_zero=True adds one more: the step to σ = 0)."""
        return steps

    def build(self, nodes: list[Node], form: str, **options: Any) -> Plan:
        """Compile the step plan for these nodes (the last step ends on nodes[-1])."""
        raise NotImplementedError

    def form_of(self, options: dict[str, Any]) -> str:
        """The form of this call: the `form` option where the solver takes one, else its own."""
        return options.pop("form", self.form)

    def integrate(
        self, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool,
        threshold: float | None = None, threshold_max: float = 1.0, **options: Any,
    ) -> tuple[Tensor, list[Tensor]]:
        """The shared preamble (the model's prediction in the call's form, thresholded), then `advance`.

        Options were validated by `check` (solve() calls it before any work)."""
        form = self.form_of(options)
        fn = prediction_fn(dynamics.model, form, threshold, threshold_max)
        return self.advance(fn, dynamics, x, grid, form, record, options)

    def advance(
        self, fn: Prediction, dynamics: Dynamics, x: Tensor, grid: Grid, form: str, record: bool,
        options: dict[str, Any],
    ) -> tuple[Tensor, list[Tensor]]:
        """Fixed-step methods: the plan (built once per solver, options and grid value: solvers/cache.py) run by
        the one step loop."""
        noise_source = self.noise_source(dynamics, grid, x, options)  # pops the noise options (ddim)
        to_zero = options.get("to_zero", False)
        # keyed by the solver object (compared by value), every option that shapes the plan, and the grid's values
        key = ("exp-plan", self, form, value_key(options))
        plan = shared(grid, key, self.plan_values(grid), lambda: self.plan(dynamics, grid, form, **options))
        noise = noise_source if plan.noisy else None
        x_end, trajectory = run(fn, x, grid.eval_points, plan, record, noise)  # the network's times
        if to_zero:
            x_end = zero_end_state(dynamics.model, x_end, grid.points[-1])
            if record:
                trajectory[-1] = x_end
        return x_end, trajectory

    def plan_for(self, dynamics: Dynamics, grid: Grid, options: dict[str, Any]) -> Plan:
        """The step plan a solve with these (checked) options runs on this grid; per-step bounds of options that
        depend on the step sizes (ddim's eta) are checked here."""
        opts = plan_options(options)
        return self.plan(dynamics, grid, self.form_of(opts), **opts)

    def plan_values(self, grid: Grid) -> Hashable:
        """What the plan depends on in the grid: its nodes' α, σ, λ (multistep methods)."""
        return node_values(grid)

    def noise_source(
        self, dynamics: Dynamics, grid: Grid, x: Tensor, options: dict[str, Any]
    ) -> Callable[[int], Tensor] | None:
        """z_i ~ N(0, I) of step i for plans with noise (none by default)."""
        return None

    def order_for(self, **options: Any) -> float:
        """The declared (or `order`-option) order; lower_order_final=True's first-order last step caps it at 2
        (the automatic default is off at the many steps where an order is fitted)."""
        order = float(options.get("order", self.order))
        return min(order, 2.0) if options.get("lower_order_final") is True else order

    def plan(self, dynamics: Dynamics, grid: Grid, form: str, *, to_zero: bool = False, **options: Any) -> Plan:
        """The step plan on this grid: nodes (plus σ = 0 with to_zero) compiled by `compile`."""
        return self.compile(nodes_of(node_points(dynamics, grid), to_zero), grid.steps, form, **options)

    def compile(self, nodes: list[Node], steps: int, form: str, *, lower_order_final: bool | None = None,
                **options: Any) -> Plan:
        """The plan over `nodes` (a grid of `steps` steps, plus σ = 0 with to_zero), by `build`; the nodes' values
        are Python floats (every solve) or 0-d tensors (a differentiable plan, weighted.py)."""
        if lower_order_final is None:
            default = next((o.default for o in self.schema if o.name == "lower_order_final"), False)
            lower_order_final = resolve_lower_order_final(default, steps)
        return self.build(nodes, form, lower_order_final=lower_order_final, **options)


def stage_outputs(fn: Prediction, x: Tensor, m0: Tensor, stages: tuple[Stage, ...]) -> list[Tensor]:
    """[m_0, m_1, …]: each stage evaluates the model at its point on the combination of the outputs so far."""
    ms = [m0]
    for stage in stages:
        ms.append(fn(combine(x, stage.combo, ms), stage.point))
    return ms


def take_step(
    fn: Prediction, x: Tensor, m0: Tensor, step: StepPlan, history: list[Tensor]
) -> tuple[Tensor, list[Tensor]]:
    """x_{i+1} of one (noise-free, uncorrected) step from x_i with m0 = model(x_i); returns it and the outputs used."""
    terms = stage_outputs(fn, x, m0, step.stages) + history[1:] if step.stages else history
    return combine(x, step.predict, terms), terms


@dataclass
class Carry:
    """What the step loop carries from step to step: the newest model outputs (newest first, at most plan.keep)
    and, when the next step corrects it (UniPC), the state before the step just taken."""

    outputs: list[Tensor] = field(default_factory=list)
    x_prev: Tensor | None = None


def plan_step(
    plan: Plan, i: int, x: Tensor, m: Tensor, carry: Carry, fn: Prediction | None = None,
    noise: Callable[[int], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Step i of the plan from x_i with m = model(x_i): (x_i corrected, x_{i+1}). Updates `carry`.

    Correct x_i with m (UniPC), remember m, predict x_{i+1} (`fn` evaluates a singlestep method's stages), add
    noise_std·z_i. Pure tensor arithmetic with precomputed floats; the one step of `run` and of the exporters."""
    step, history = plan.steps[i], carry.outputs
    mix = weighted_combine if plan.weighted else combine
    if step.correct is not None:
        x = mix(carry.x_prev, step.correct, [m] + history)
    history.insert(0, m)
    del history[plan.keep:]
    # the state before the step is kept only when the next step corrects it (UniPC): one state less in memory
    carry.x_prev = x if plan.keeps_state[i] else None
    if step.stages:
        if fn is None:
            raise SolverError("internal: a step with stages needs the prediction function")
        x_next = take_step(fn, x, m, step, history)[0]
    else:
        x_next = mix(x, step.predict, history)
    if step.noise_std > 0.0:
        x_next = x_next.add_(noise(i), alpha=step.noise_std)  # type: ignore[misc]
    return x, x_next


def run(
    fn: Prediction, x: Tensor, points: list[Point], plan: Plan, record: bool,
    noise: Callable[[int], Tensor] | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """The step loop: evaluate, then `plan_step` (correct, stages, predict, noise): pure tensor arithmetic with
    precomputed floats, or for a weighted plan 0-d tensor coefficients combined out of place (differentiable).

    `points[i]`: where the model is evaluated at node i (the grid's points, or its decoupled t_eval points). With
    record, the state after every step (x̂0 last after a step to σ = 0)."""
    carry = Carry()
    trajectory: list[Tensor] = []
    for i, step in enumerate(plan.steps):
        x_corrected, x = plan_step(plan, i, x, fn(x, points[i]), carry, fn, noise)
        if record and step.correct is not None:
            trajectory[-1] = x_corrected
        if record:
            trajectory.append(x)
    return x, trajectory
