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

__all__ = [
    "errors", "grids", "schedules", "solvers",
    "DDIMODE", "VPSDE", "Dynamics", "ForwardSDE", "ProbabilityFlowODE", "ReverseSDE", "ReverseVPSDE", "ode",
    "DiffsolveError", "GridError", "ModelError", "ScheduleError", "SolverError",
    "CFG", "EpsModel", "FlowModel", "Model", "ScoreModel", "VModel", "X0Model", "wrap",
    "Point", "make_point", "make_points",
    "EDM", "DiscreteDDPM", "Flow", "Schedule", "VPCosine", "VPLinear", "VPSchedule",
    "Solution", "sample", "solve", "SOLVERS", "get_solver",
]
