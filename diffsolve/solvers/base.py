"""The solver interface and the registry of solvers by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor

from ..checks import Option
from ..dynamics import Dynamics
from ..errors import SolverError, unknown_name
from ..grids import Grid
from ..models import Model
from ..points import Point
from ..valuecache import ValueCache, value_key
from .contract import ANY_ODE, Integrates
from .options import check_options


class Solver(ABC):
    """Integrates dynamics over a grid from VP-coordinate x at grid.t[0] to x at grid.t[-1].

    Subclasses declare `family`, `order` (ODE order, or strong order for SDE solvers), what they integrate
    (`integrates`, a contract.Integrates), how many network evaluations a number of steps costs, and their
    options as a schema (`schema`, a tuple of options.Option). What depends on the options is answered by
    `integrates_for`, `stochastic_for` and `order_for`.
    """

    name: str = ""
    family: str = ""
    order: float = 1.0
    adaptive: bool = False
    evaluates_at_nodes: bool = False  # one model call per grid node: takes decoupled t_eval, tuning may learn them
    min_steps: int = 1
    schema: tuple[Option, ...] = ()
    renamed: dict[str, str] = {}  # old option name → new one (rejected with the new name)
    fixed: dict[str, str] = {}  # options its name fixes (e.g. dpmpp2m: order, form) → the value and the alternative
    integrates: Integrates = ANY_ODE
    description: str = ""

    @property
    def options(self) -> tuple[str, ...]:
        """The names of the options this solver takes."""
        return tuple(o.name for o in self.schema)

    @property
    def accepts_decoupled(self) -> bool:
        """Whether it takes grids with decoupled evaluation times: it calls the model at grid nodes only."""
        return self.evaluates_at_nodes

    @property
    def stochastic(self) -> bool:
        """Whether the solver (with its default options) samples an SDE."""
        return self.integrates.stochastic

    def integrates_for(self, **options: Any) -> Integrates:
        """What this solver integrates with these options (the declaration, unless an option changes it)."""
        return self.integrates

    def stochastic_for(self, **options: Any) -> bool:
        """Whether these options make the solver stochastic (e.g. ddim with eta > 0)."""
        return self.integrates_for(**options).stochastic

    def order_for(self, **options: Any) -> float:
        """The convergence order reached with these options, as NFE → ∞ on a fixed grid family."""
        return float(self.order)

    @abstractmethod
    def nfe_for(self, steps: int) -> int | None:
        """Network evaluations spent on `steps` steps (None when adaptive)."""

    def steps_for(self, nfe: int, **options: Any) -> int:
        """The number of steps that spends at most `nfe` evaluations (fixed-step solvers) with these options."""
        if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
            raise SolverError(f"an NFE budget must be a positive integer, got {nfe!r}; pass e.g. nfe=20")
        zero = 1 if options.get("to_zero") else 0  # the step to σ = 0 spends one evaluation of the budget
        if zero and nfe < 2:
            raise SolverError(f"solver {self.name!r} with to_zero (end='zero') spends one evaluation on the step "
                              f"to σ = 0, so it needs nfe >= 2, got {nfe}; raise the NFE or end at σ_min")
        nfe -= zero
        per_step = self.nfe_for(1)
        if per_step is None and self.adaptive:
            raise SolverError(f"solver {self.name!r} is adaptive: give it tolerances, not an NFE budget")
        if per_step is None:
            raise SolverError(
                f"solver {self.name!r} steps on the grid, but its evaluations per step are not fixed in advance, so "
                f"no step count is known to spend nfe={nfe}; give it steps= instead"
            )
        steps = nfe // max(per_step, 1)
        if steps < self.min_steps:
            raise SolverError(
                f"an NFE budget of {nfe + zero} is below what solver {self.name!r} needs: at least "
                f"{self.min_steps * per_step + zero} ({self.min_steps} step(s) of {per_step} evaluation(s)"
                f"{', and the step to σ = 0' if zero else ''}); raise the NFE or pick a lower-order solver"
            )
        return steps

    def budget_options(self, nfe: int) -> dict[str, Any]:
        """Options a solver needs to spend exactly `nfe` on the grid of `steps_for(nfe)` steps (none by default)."""
        return {}

    def check_options(self, options: dict[str, Any]) -> None:
        """Validate option names and values against the schema, then the rules joining several options."""
        check_options(self.name, self.schema, self.renamed, options, self.fixed)
        self.check_together(options)

    def check_together(self, options: dict[str, Any]) -> None:
        """Rules that join several options (e.g. seed= or bm=, not both); none by default."""
        return None

    def check(self, dynamics: Dynamics, grid: Grid, options: dict[str, Any]) -> None:
        """Raise if this solver cannot run these dynamics on this grid with these options (before any work).

        Without options the outcome depends only on the solver (by value), what the dynamics declare and whether
        the grid has enough steps: a pass is remembered under those, so a repeated solve skips the checks."""
        key = None if options else (self, type(dynamics), dynamics.variable, dynamics.stochastic,
                                    dynamics.model is None, dynamics.semilinear, dynamics.additive_noise,
                                    dynamics.time_reversed, grid.steps >= self.min_steps,
                                    grid.decoupled)
        if key is not None and key in _PASSED:
            return
        self._check(dynamics, grid, options)
        if key is not None:
            _PASSED.put(key, True)

    def _check(self, dynamics: Dynamics, grid: Grid, options: dict[str, Any]) -> None:
        self.check_options(options)
        if grid.decoupled and not self.accepts_decoupled:
            takes = sorted(name for name, s in SOLVERS.items() if s.accepts_decoupled)
            raise SolverError(
                f"grid {grid.name!r} has decoupled evaluation times (t_eval), which only solvers that call the model "
                f"at the grid nodes alone use; {self.name!r} does not. Use one of {takes}, or the grid's times alone: "
                f"Grid(schedule, grid.t)"
            )
        need = self.integrates_for(**options)
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
        because = "" if need.stochastic == self.stochastic else f" with {shown}"
        if dynamics.stochastic and not need.stochastic:
            raise SolverError(
                f"solver {self.name!r}{because} solves ODEs but {dynamics!r} is an SDE; use an SDE solver "
                f"such as 'euler_maruyama', or an ODE (diffsolve.ode(model, variable))"
            )
        if need.stochastic and not dynamics.stochastic:
            raise SolverError(
                f"solver {self.name!r}{because} solves SDEs but {dynamics!r} is an ODE; use an ODE solver "
                f"such as 'heun', or the reverse SDE (diffsolve.VPSDE(schedule).reverse(model))"
            )
        unmet = need.unmet(dynamics)
        if unmet:
            raise SolverError(
                f"solver {self.name!r} integrates {need.what}, but {dynamics!r}: {'; '.join(unmet)}; {need.fix}"
            )
        if grid.steps < self.min_steps:
            raise SolverError(
                f"solver {self.name!r} needs at least {self.min_steps} steps, the grid has {grid.steps}; "
                f"use more steps"
            )

    def describe(self) -> str:
        """Name, family, order, what it integrates and its options, one per line (for listings)."""
        head = f"{self.name} ({self.family}, order {self.order:g}{', adaptive' if self.adaptive else ''}): "
        lines = [head + self.description, f"  integrates {self.integrates.what}"]
        lines += [f"  {o.describe()}" for o in self.schema]
        lines += [f"  ({old} was renamed {new})" for old, new in self.renamed.items()]
        return "\n".join(lines)

    @abstractmethod
    def integrate(
        self, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool, **options: Any
    ) -> tuple[Tensor, list[Tensor]]:
        """Return x at grid.t[-1] and, when record is set, x at every grid time after the first."""

    def identity(self) -> tuple:
        """What determines this solver's numbers: its class and its attributes (compared by value).

        Solvers do not change after construction, so the tuple is built once (cache keys hash it every call)."""
        cached = self.__dict__.get("_identity")
        if cached is None:
            attrs = tuple(sorted((k, value_key(v)) for k, v in vars(self).items() if k != "_identity"))
            cached = (type(self), attrs, hash((type(self), attrs)))
            self.__dict__["_identity"] = cached
        return cached[:2]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Solver) and (self is other or self.identity() == other.identity())

    def __hash__(self) -> int:
        self.identity()
        return self.__dict__["_identity"][2]

    def __repr__(self) -> str:
        return f"<solver {self.name}: order {self.order}>"


def node_points(dynamics: Dynamics, grid: Grid) -> list[Point]:
    """The schedule quantities at every grid time, computed once per grid (cached on it)."""
    return grid.points


def zero_end_state(model: Model, x0: Tensor, end: Point) -> Tensor:
    """x̂0 of a step to σ = 0 as the state solve() takes at the grid's end (`end`): solve() maps that state to the
    user's coordinates there (÷ α_end for coords="ve"), so x̂0 goes back as α_end·x̂0 and the user receives x̂0."""
    return x0 * end.alpha if model.coords == "ve" else x0


SOLVERS: dict[str, Solver] = {}
_PASSED = ValueCache(4096)  # option-free checks that passed (Solver.check)


def register(solver: Solver) -> Solver:
    """Add a solver to the registry under its name (names are unique)."""
    if solver.name in SOLVERS:
        raise SolverError(f"a solver named {solver.name!r} is already registered")
    SOLVERS[solver.name] = solver
    return solver


def get_solver(name: str | Solver) -> Solver:
    """Look a solver up by name; an unknown name is an error listing the valid ones."""
    if isinstance(name, Solver):
        return name
    if name not in SOLVERS:
        raise SolverError(unknown_name("solver", str(name), list(SOLVERS)))
    return SOLVERS[name]
