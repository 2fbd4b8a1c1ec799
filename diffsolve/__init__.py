"""diffsolve: diffusion sampling as differential equations, handed to numerical solvers."""

from . import errors, grids, schedules, solvers
from .dynamics import DDIMODE, VPSDE, Dynamics, ProbabilityFlowODE, ReverseVPSDE, ode
from .errors import DiffsolveError, GridError, ModelError, ScheduleError, SolverError
from .models import CFG, EpsModel, Model, ScoreModel, VModel, X0Model, wrap
from .points import Point, make_point, make_points
from .schedules import EDM, DiscreteDDPM, Schedule, VPCosine, VPLinear
from .solve import Solution, sample, solve
from .solvers import SOLVERS, get_solver

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """`ds.bench` and `ds.problems` are imported on first use (they pull in matplotlib, tqdm, the checkpoints)."""
    if name in ("bench", "problems"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'diffsolve' has no attribute {name!r}")

__all__ = [
    "errors", "grids", "schedules", "solvers",
    "DDIMODE", "VPSDE", "Dynamics", "ProbabilityFlowODE", "ReverseVPSDE", "ode",
    "DiffsolveError", "GridError", "ModelError", "ScheduleError", "SolverError",
    "CFG", "EpsModel", "Model", "ScoreModel", "VModel", "X0Model", "wrap",
    "Point", "make_point", "make_points",
    "EDM", "DiscreteDDPM", "Schedule", "VPCosine", "VPLinear",
    "Solution", "sample", "solve", "SOLVERS", "get_solver",
]
