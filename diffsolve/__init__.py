"""diffsolve: diffusion sampling as differential equations, handed to numerical solvers."""

from . import errors, grids, schedules, solvers
from .dynamics import DDIMODE, VPSDE, Dynamics, ForwardSDE, ProbabilityFlowODE, ReverseSDE, ReverseVPSDE, ode
from .errors import DiffsolveError, GridError, ModelError, ScheduleError, SolverError
from .models import CFG, EpsModel, FlowModel, Model, ScoreModel, VModel, X0Model, wrap
from .points import Point, make_point, make_points
from .schedules import EDM, DiscreteDDPM, Flow, Schedule, VPCosine, VPLinear, VPSchedule
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
    "DDIMODE", "VPSDE", "Dynamics", "ForwardSDE", "ProbabilityFlowODE", "ReverseSDE", "ReverseVPSDE", "ode",
    "DiffsolveError", "GridError", "ModelError", "ScheduleError", "SolverError",
    "CFG", "EpsModel", "FlowModel", "Model", "ScoreModel", "VModel", "X0Model", "wrap",
    "Point", "make_point", "make_points",
    "EDM", "DiscreteDDPM", "Flow", "Schedule", "VPCosine", "VPLinear", "VPSchedule",
    "Solution", "sample", "solve", "SOLVERS", "get_solver",
]
