"""diffsolve: diffusion sampling as differential equations, handed to numerical solvers.

`import diffsolve` is light: only the errors are imported here; every other public name (`ds.VPLinear`,
`ds.sample`, `ds.grids`, `ds.bench`, …) is imported on first use (PEP 562), so that the command line can
install its Ctrl-C handler before torch loads. `from diffsolve import X` and `ds.X` work as before.
"""

from __future__ import annotations

import importlib
import sys
import types

from . import errors
from .errors import DiffsolveError, GridError, ModelError, ScheduleError, SolverError

__version__ = "0.1.0"
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `import diffsolve` stays light for the CLI

# public name → the submodule that defines it
_NAMES = {
    **dict.fromkeys(
        ("DDIMODE", "VPSDE", "Dynamics", "ForwardSDE", "ProbabilityFlowODE", "ReverseSDE", "ReverseVPSDE", "ode"),
        "dynamics"),
    **dict.fromkeys(("CFG", "EpsModel", "FlowModel", "Model", "ScoreModel", "VModel", "X0Model", "wrap"), "models"),
    **dict.fromkeys(("Point", "make_point", "make_points"), "points"),
    **dict.fromkeys(("EDM", "DiscreteDDPM", "Flow", "Schedule", "VPCosine", "VPLinear", "VPSchedule"), "schedules"),
    **dict.fromkeys(("Solution", "sample", "solve"), "solve"),
    **dict.fromkeys(("SOLVERS", "get_solver"), "solvers"),
}
# submodules reachable as attributes (`ds.grids`); `solve` is not among them: `ds.solve` is the function
_SUBMODULES = ("bench", "checks", "cli", "dynamics", "export", "graphs", "grids", "interop", "likelihood", "models",
               "nets", "points", "problems", "schedules", "solvers", "syncguard", "training", "tuning")


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first use and keep the value as a module global."""
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'diffsolve' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES) | set(_SUBMODULES))


def _tune_grid(*args: Any, **kwargs: Any) -> Any:
    """`ds.grids.tune`: a step grid tuned to a model and a solver at an NFE (diffsolve.tuning.tune, same arguments)."""
    from .tuning import tune

    return tune(*args, **kwargs)


def _learn_solver(*args: Any, **kwargs: Any) -> Any:
    """`ds.solvers.learn`: a solver with weights learned for a model (diffsolve.tuning.learn, same arguments)."""
    from .tuning import learn

    return learn(*args, **kwargs)


class _Package(types.ModuleType):
    """The package module. The import system binds each submodule on its package through this __setattr__:
    the function `ds.solve` wins over the submodule `diffsolve.solve`, the grids module gets `tune` and the solvers
    module `learn` (the tuner sits above both, so it is bound from the top instead of imported by them)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "solve" and isinstance(value, types.ModuleType):
            value = value.solve
        elif name == "grids" and isinstance(value, types.ModuleType):
            value.tune = _tune_grid
        elif name == "solvers" and isinstance(value, types.ModuleType):
            value.learn = _learn_solver
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from typing import Any  # noqa: F401  (annotations only: `import typing` costs milliseconds at start-up)

    from . import bench, grids, problems, schedules, solvers  # noqa: F401  (bench, problems: not in __all__)
    from .dynamics import DDIMODE, VPSDE, Dynamics, ForwardSDE, ProbabilityFlowODE, ReverseSDE, ReverseVPSDE, ode
    from .models import CFG, EpsModel, FlowModel, Model, ScoreModel, VModel, X0Model, wrap
    from .points import Point, make_point, make_points
    from .schedules import EDM, DiscreteDDPM, Flow, Schedule, VPCosine, VPLinear, VPSchedule
    from .solve import Solution, sample, solve
    from .solvers import SOLVERS, get_solver

__all__ = [
    "errors", "grids", "schedules", "solvers",
    "DDIMODE", "VPSDE", "Dynamics", "ForwardSDE", "ProbabilityFlowODE", "ReverseSDE", "ReverseVPSDE", "ode",
    "DiffsolveError", "GridError", "ModelError", "ScheduleError", "SolverError",
    "CFG", "EpsModel", "FlowModel", "Model", "ScoreModel", "VModel", "X0Model", "wrap",
    "Point", "make_point", "make_points",
    "EDM", "DiscreteDDPM", "Flow", "Schedule", "VPCosine", "VPLinear", "VPSchedule",
    "Solution", "sample", "solve", "SOLVERS", "get_solver",
]
