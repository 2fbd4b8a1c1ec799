"""Solvers by name: Runge–Kutta (runge_kutta), torchdiffeq's ODE methods (torchdiffeq_ode), torchsde's SDE methods
(sde), exponential integrators of the reverse SDE (sde_exponential) and of the ODE in λ (exp/)."""

from . import runge_kutta, sde, sde_exponential, torchdiffeq_ode  # noqa: F401  (importing registers the solvers)
from .base import SOLVERS, Solver, get_solver, register
from .runge_kutta import ButcherTableau, ExplicitRK

__all__ = ["SOLVERS", "Solver", "get_solver", "register", "describe", "ButcherTableau", "ExplicitRK"]
from . import exp  # noqa: F401,E402  (exponential integrators: ddim, dpm*, dpmpp*, deis, unipc)


def describe(names: list[str] | None = None) -> str:
    """Every registered solver (or those named) with its family, order, what it integrates and its options."""
    return "\n".join(get_solver(n).describe() for n in (names if names is not None else SOLVERS))
