"""The benchmark problem interface: a model, starting noise x_T and a float64 reference solution.

A problem fixes the data (analytic or learned), hands out a diffsolve Model for any VP schedule,
draws x_T at the start time and computes the reference end state x(t_end) of the sampling ODE
from the same x_T, in VP coordinates. Problems with a known data law also give exact samples of
every marginal p_t, which the benchmark uses for the sliced Wasserstein distance.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ..dynamics import ode
from ..errors import DiffsolveError
from ..models import Model
from ..schedules import Schedule, VPLinear

F64 = torch.float64


def generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for (seed, stream): independent streams for x_T, exact sets, projections."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DiffsolveError(f"seed must be a non-negative integer, got {seed!r}")
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)


def time_range(schedule: Schedule, t_start: float | None, t_end: float | None) -> tuple[float, float]:
    """(t_start, t_end), defaulting to the whole schedule (t_max → t_min), checked to lie inside it."""
    t0 = schedule.t_max if t_start is None else float(t_start)
    t1 = schedule.t_min if t_end is None else float(t_end)
    schedule.check_times(torch.tensor([t0, t1], dtype=F64), "problem time range")
    return t0, t1


class Problem(ABC):
    """A benchmark problem: dimension, a model for a schedule, x_T draws and a reference solve."""

    name: str = ""
    dim: int = 0
    description: str = ""
    has_exact_samples: bool = False

    def fingerprint(self) -> str:
        """Identifies what the problem computes, for on-disk caches of its references; override it
        (e.g. with a checkpoint's hash) when the name alone does not fix the model."""
        return f"{type(self).__name__}:{self.name}"

    def default_schedule(self) -> Schedule:
        """The schedule used when none is given (continuous linear VP)."""
        return VPLinear()

    @abstractmethod
    def model(self, schedule: Schedule | None = None, dtype: torch.dtype = F64) -> Model:
        """A diffsolve Model (fresh NFE counter) of this problem's denoiser on `schedule`."""

    @abstractmethod
    def x_T(
        self, n: int, seed: int, schedule: Schedule | None = None, t_start: float | None = None,
        dtype: torch.dtype = F64,
    ) -> Tensor:
        """n starting states at t_start (default schedule.t_max), VP coordinates, shape (n, dim)."""

    def reference(
        self, x_T: Tensor, schedule: Schedule | None = None, t_start: float | None = None,
        t_end: float | None = None, rtol: float = 1e-10, atol: float = 1e-10,
    ) -> Tensor:
        """x(t_end) of the sampling ODE from x_T, by a float64 dopri8 solve of the model itself in λ.

        Generic fallback for problems without a closed-form denoiser (trained networks); its own
        error is estimated by `reference_error`.
        """
        from ..grids import custom
        from ..solve import solve

        schedule = schedule or self.default_schedule()
        t0, t1 = time_range(schedule, t_start, t_end)
        model = self.model(schedule, dtype=F64)
        sol = solve(ode(model, "lambda"), x_T.to(F64), custom(schedule, [t0, t1]), "dopri8", rtol=rtol, atol=atol)
        return sol.x

    def reference_error(
        self, x_T: Tensor, schedule: Schedule | None = None, t_start: float | None = None,
        t_end: float | None = None, rtol: float = 1e-10, atol: float = 1e-10, factor: float = 100.0,
    ) -> float:
        """RMSE per dimension between the reference at (rtol, atol) and at tolerances `factor` times tighter."""
        a = self.reference(x_T, schedule, t_start, t_end, rtol, atol)
        b = self.reference(x_T, schedule, t_start, t_end, rtol / factor, atol / factor)
        return float(torch.sqrt(torch.mean((a - b) ** 2)))

    def samples(
        self, n: int, seed: int, schedule: Schedule | None = None, t: float | None = None, stream: int = 1
    ) -> Tensor:
        """n exact samples of the marginal p_t (VP coordinates); only where has_exact_samples."""
        raise DiffsolveError(
            f"problem {self.name!r} has no exact samples (its data law is not known in closed form); "
            f"use a problem with has_exact_samples = True, e.g. 'gmm-64', for sample-quality metrics"
        )

    def __repr__(self) -> str:
        return f"<problem {self.name}: dim {self.dim}>"
