"""Solvers by name: generic Runge–Kutta, torchdiffeq's ODE methods, torchsde's SDE methods."""

from . import adaptive, ancestral, runge_kutta, sde  # noqa: F401  (importing registers the solvers)
from .base import SOLVERS, Solver, get_solver, register
from .runge_kutta import ButcherTableau, ExplicitRK

__all__ = ["SOLVERS", "Solver", "get_solver", "register", "ButcherTableau", "ExplicitRK"]
from . import exp  # noqa: F401,E402  (exponential integrators: ddim, dpm*, dpmpp*, deis, unipc)
