"""Time points: every schedule quantity at one t, computed once in float64, held as Python floats.

Solvers build all their points before the step loop, so the loop reads plain floats (no device
scalars, no `.item()`), and the network's time input is a tensor made once per point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .schedules import Schedule, as_f64


@dataclass(slots=True)
class Point:
    """Schedule quantities at one time t (float64 values as Python floats)."""

    t: float
    log_alpha: float
    alpha: float
    sigma: float
    lam: float
    sigma_bar: float
    beta: float
    model_time: float
    _time_input: Tensor | None = field(default=None, repr=False)

    def time_input(self, batch: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The network's time argument, a (batch,) tensor, created once and cached."""
        ti = self._time_input
        if ti is None or ti.shape[0] != batch or ti.device != device or ti.dtype != dtype:
            ti = torch.full((batch,), self.model_time, device=device, dtype=dtype)
            self._time_input = ti
        return ti


def time_input_dtype(state_dtype: torch.dtype) -> torch.dtype:
    """float64 states feed float64 times; every other dtype feeds float32 (bf16 cannot hold t = 999)."""
    return torch.float64 if state_dtype == torch.float64 else torch.float32


def make_points(schedule: Schedule, t: Tensor | float | list[float]) -> list[Point]:
    """All schedule quantities at each t, computed vectorised in float64 on the CPU."""
    t = as_f64(t).detach().cpu().reshape(-1)
    la = schedule.log_alpha(t)
    one_minus_a2 = -torch.expm1(2.0 * la)
    lam = schedule.lam(t) if type(schedule).lam is not Schedule.lam else la - 0.5 * torch.log(one_minus_a2)
    sigma_bar = schedule.sigma_bar(t) if type(schedule).sigma_bar is not Schedule.sigma_bar else torch.exp(-lam)
    columns = (
        t,
        la,
        torch.exp(la),
        torch.sqrt(one_minus_a2),
        lam,
        sigma_bar,
        schedule.beta(t),
        schedule.model_time(t),
    )
    rows = zip(*(c.tolist() for c in columns))
    return [Point(*row) for row in rows]


def make_point(schedule: Schedule, t: Tensor | float) -> Point:
    """The schedule quantities at one time t."""
    return make_points(schedule, t)[0]
