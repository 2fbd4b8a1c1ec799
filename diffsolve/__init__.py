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

__all__ = [
    "errors", "grids", "schedules", "solvers",
    "DDIMODE", "VPSDE", "Dynamics", "ProbabilityFlowODE", "ReverseVPSDE", "ode",
    "DiffsolveError", "GridError", "ModelError", "ScheduleError", "SolverError",
    "CFG", "EpsModel", "Model", "ScoreModel", "VModel", "X0Model", "wrap",
    "Point", "make_point", "make_points",
    "EDM", "DiscreteDDPM", "Schedule", "VPCosine", "VPLinear",
    "Solution", "sample", "solve", "SOLVERS", "get_solver",
]
