"""Step grids: strictly monotone float64 times t_0 (start) … t_N (end) with exact end points.

time:      uniform in t;           logsnr:  uniform in λ (half log-SNR);
quadratic: uniform in √t;          karras:  σ̄_i = (σ̄_max^{1/ρ} + i/N (σ̄_min^{1/ρ} − σ̄_max^{1/ρ}))^ρ.
Sampling grids run from noisy (large t) to clean (small t); forward-SDE grids the other way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from .errors import GridError, unknown_name
from .schedules import F64, Schedule, as_f64


@dataclass(frozen=True)
class Grid:
    """A validated step grid: float64 times `t` (length steps + 1) on a schedule."""

    schedule: Schedule
    t: Tensor
    name: str = "custom"
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        t = as_f64(self.t).detach().cpu().reshape(-1)
        object.__setattr__(self, "t", t)
        if t.numel() < 2:
            raise GridError(
                f"a grid needs at least 2 times (1 step), got {t.numel()}; pass steps >= 1"
            )
        if not bool(torch.isfinite(t).all()):
            raise GridError(f"grid times must be finite, got {t.tolist()}")
        d = torch.diff(t)
        if not (bool((d < 0).all()) or bool((d > 0).all())):
            bad = int(((d >= 0) if d[0] < 0 else (d <= 0)).nonzero()[0, 0])
            raise GridError(
                f"grid times must be strictly monotone; t[{bad}] = {t[bad].item():.17g} and "
                f"t[{bad + 1}] = {t[bad + 1].item():.17g} break the order. Sort the times "
                f"(descending for sampling) and remove repeats"
            )
        self.schedule.check_times(t, "grid")

    def memo(self, key: Any, build: Callable[[], Any]) -> Any:
        """Per-grid cache of precomputed coefficients: build() runs once per key."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    @property
    def points(self) -> list:
        """Schedule quantities (diffsolve.points.Point) at every grid time, computed once."""
        from .points import make_points

        return self.memo("points", lambda: make_points(self.schedule, self.t))

    @property
    def steps(self) -> int:
        """Number of steps N (the grid has N + 1 times)."""
        return self.t.numel() - 1

    @property
    def decreasing(self) -> bool:
        """True for sampling grids (noisy → clean)."""
        return bool(self.t[1] < self.t[0])

    @cached_property
    def lam(self) -> Tensor:
        """λ at each grid time (float64)."""
        return self.schedule.lam(self.t)

    @cached_property
    def sigma_bar(self) -> Tensor:
        """σ̄ at each grid time (float64)."""
        return self.schedule.sigma_bar(self.t)

    @cached_property
    def alpha(self) -> Tensor:
        """α at each grid time (float64)."""
        return self.schedule.alpha(self.t)

    @cached_property
    def sigma(self) -> Tensor:
        """σ at each grid time (float64)."""
        return self.schedule.sigma(self.t)

    def __len__(self) -> int:
        return self.t.numel()

    def __repr__(self) -> str:
        return f"Grid({self.name}, steps={self.steps}, t={self.t[0].item():.6g}→{self.t[-1].item():.6g})"


def _ends(schedule: Schedule, t_start: float | None, t_end: float | None) -> tuple[float, float]:
    t0 = schedule.t_max if t_start is None else float(t_start)
    t1 = schedule.t_min if t_end is None else float(t_end)
    return t0, t1


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise GridError(f"steps must be a positive integer, got {steps!r}")


def _finish(schedule: Schedule, t: Tensor, t0: float, t1: float, name: str) -> Grid:
    t = t.clone()
    t[0], t[-1] = t0, t1  # exact end points, free of inverse-map round-off
    return Grid(schedule, t, name)


def time(schedule: Schedule, steps: int, t_start: float | None = None, t_end: float | None = None) -> Grid:
    """Uniform in t from t_start (default t_max) to t_end (default t_min)."""
    _check_steps(steps)
    t0, t1 = _ends(schedule, t_start, t_end)
    return _finish(schedule, torch.linspace(t0, t1, steps + 1, dtype=F64), t0, t1, "time")


def logsnr(schedule: Schedule, steps: int, t_start: float | None = None, t_end: float | None = None) -> Grid:
    """Uniform in λ = log(α/σ) (DPM-Solver's 'logSNR' grid)."""
    _check_steps(steps)
    t0, t1 = _ends(schedule, t_start, t_end)
    schedule.check_times(torch.tensor([t0, t1], dtype=F64), "grid end")
    lam = torch.linspace(float(schedule.lam(t0)), float(schedule.lam(t1)), steps + 1, dtype=F64)
    return _finish(schedule, schedule.t_from_lambda(lam), t0, t1, "logsnr")


def quadratic(schedule: Schedule, steps: int, t_start: float | None = None, t_end: float | None = None) -> Grid:
    """Uniform in √t (DPM-Solver's 'time_quadratic' grid), denser near the clean end."""
    _check_steps(steps)
    t0, t1 = _ends(schedule, t_start, t_end)
    return _finish(schedule, torch.linspace(t0**0.5, t1**0.5, steps + 1, dtype=F64) ** 2, t0, t1, "quadratic")


def karras(
    schedule: Schedule, steps: int, rho: float = 7.0, t_start: float | None = None, t_end: float | None = None
) -> Grid:
    """Karras et al. (EDM): uniform in σ̄^{1/ρ}."""
    _check_steps(steps)
    if rho <= 0:
        raise GridError(f"karras rho must be positive, got {rho}; EDM uses 7")
    t0, t1 = _ends(schedule, t_start, t_end)
    schedule.check_times(torch.tensor([t0, t1], dtype=F64), "grid end")
    s0, s1 = float(schedule.sigma_bar(t0)), float(schedule.sigma_bar(t1))
    ramp = torch.linspace(0.0, 1.0, steps + 1, dtype=F64)
    sb = (s0 ** (1 / rho) + ramp * (s1 ** (1 / rho) - s0 ** (1 / rho))) ** rho
    return _finish(schedule, schedule.t_from_sigma_bar(sb), t0, t1, "karras")


def custom(schedule: Schedule, t: Tensor | list[float]) -> Grid:
    """A user-given sequence of times, validated (strictly monotone, finite, inside the schedule)."""
    return Grid(schedule, as_f64(t), "custom")


GRIDS: dict[str, Callable[..., Grid]] = {
    "time": time,
    "logsnr": logsnr,
    "quadratic": quadratic,
    "karras": karras,
}


def make(name: str, schedule: Schedule, steps: int, **kwargs: float) -> Grid:
    """Build a grid by name: time, logsnr, quadratic or karras."""
    if name not in GRIDS:
        raise GridError(unknown_name("grid", name, list(GRIDS)))
    return GRIDS[name](schedule, steps, **kwargs)
