"""The solver interface and the registry of solvers by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor

from ..dynamics import Dynamics
from ..errors import SolverError, unknown_name
from ..grids import Grid
from ..points import Point


class Solver(ABC):
    """Integrates dynamics over a grid from VP-coordinate x at grid.t[0] to x at grid.t[-1].

    Subclasses declare `order` (ODE order, or strong order for SDE solvers), whether they are
    `stochastic`, how many network evaluations a number of steps costs, and the options they take.
    """

    name: str = ""
    order: float = 1.0
    stochastic: bool = False
    adaptive: bool = False
    min_steps: int = 1
    options: tuple[str, ...] = ()
    description: str = ""

    @abstractmethod
    def nfe_for(self, steps: int) -> int | None:
        """Network evaluations spent on `steps` steps (None when adaptive)."""

    def steps_for(self, nfe: int) -> int:
        """The number of steps that spends at most `nfe` evaluations (fixed-step solvers)."""
        per_step = self.nfe_for(1)
        if per_step is None:
            raise SolverError(f"solver {self.name!r} is adaptive: give it tolerances, not an NFE budget")
        steps = nfe // max(per_step, 1)
        if steps < self.min_steps:
            raise SolverError(
                f"an NFE budget of {nfe} is below what solver {self.name!r} needs: at least "
                f"{self.min_steps * per_step} ({self.min_steps} step(s) of {per_step} evaluation(s)); "
                f"raise the NFE or pick a lower-order solver"
            )
        return steps

    def budget_options(self, nfe: int) -> dict[str, Any]:
        """Options a solver needs to spend exactly `nfe` on the grid of `steps_for(nfe)` steps (none by default)."""
        return {}

    def check(self, dynamics: Dynamics, grid: Grid, options: dict[str, Any]) -> None:
        """Raise if this solver cannot run these dynamics on this grid with these options."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise SolverError(
                f"solver {self.name!r} takes no option(s) {', '.join(unknown)}; "
                f"it takes: {', '.join(self.options) or 'none'}"
            )
        if dynamics.stochastic and not self.stochastic:
            raise SolverError(
                f"solver {self.name!r} solves ODEs but {dynamics!r} is an SDE; use an SDE solver "
                f"such as 'euler_maruyama', or an ODE (diffsolve.ode(model, variable))"
            )
        if self.stochastic and not dynamics.stochastic:
            raise SolverError(
                f"solver {self.name!r} solves SDEs but {dynamics!r} is an ODE; use an ODE solver "
                f"such as 'heun', or the reverse SDE (diffsolve.VPSDE(schedule).reverse(model))"
            )
        if grid.steps < self.min_steps:
            raise SolverError(
                f"solver {self.name!r} needs at least {self.min_steps} steps, the grid has {grid.steps}; "
                f"use more steps"
            )

    @abstractmethod
    def integrate(
        self, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool, **options: Any
    ) -> tuple[Tensor, list[Tensor]]:
        """Return x at grid.t[-1] and, when record is set, x at every grid time after the first."""

    def identity(self) -> tuple:
        """What determines this solver's numbers: its class and its attributes (compared by value)."""
        return (type(self), tuple(sorted((k, freeze(v)) for k, v in vars(self).items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Solver) and self.identity() == other.identity()

    def __hash__(self) -> int:
        return hash(self.identity())

    def __repr__(self) -> str:
        return f"<solver {self.name}: order {self.order}>"


def freeze(value: Any) -> Any:
    """A hashable value-equal copy of an option or attribute (lists → tuples, dicts → sorted item tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def node_points(dynamics: Dynamics, grid: Grid) -> list[Point]:
    """The schedule quantities at every grid time, computed once per grid (cached on it)."""
    return grid.points


SOLVERS: dict[str, Solver] = {}


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
