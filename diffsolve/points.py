"""Time points: every schedule quantity at one t, computed once in float64, held as Python floats.

Solvers build all their points before the step loop, so the loop reads plain floats (no device
scalars, no `.item()`), and the network's time input is a tensor made once per point. Differentiable points
(`differentiable_points`, for tuning) hold 0-d float64 tensors instead, functions of times that require grad.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .schedules import Schedule, as_f64
from .valuecache import ValueCache

# Points by value: (schedule, times) → points; bounded by the points held (each may keep its network time input)
POINTS = ValueCache(4096, weigh=len)


@dataclass(slots=True)
class Point:
    """Schedule quantities at one time t (float64 values as Python floats).

    f = d log α/dt and g2 = g² = dσ²/dt − 2fσ² are the forward SDE's coefficients (VP: f = −β/2, g² = β);
    d_alpha, d_sigma = dα/dτ, dσ/dτ in the network's velocity time τ (t, or the flow time σ for `Flow`).
    """

    t: float
    log_alpha: float
    alpha: float
    sigma: float
    lam: float
    sigma_bar: float
    f: float
    g2: float
    d_alpha: float
    d_sigma: float
    model_time: float
    _time_input: Tensor | None = field(default=None, repr=False)

    @property
    def beta(self) -> float:
        """β = g², the VP name of the diffusion coefficient squared."""
        return self.g2

    def time_input(self, batch: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The network's time argument, a (batch,) tensor, created once and cached."""
        ti = self._time_input
        if ti is None or ti.dtype is not dtype or ti.shape[0] != batch or ti.device != device:
            if isinstance(self.model_time, Tensor):  # a differentiable point: never cached (its graph is per call)
                return filled(self.model_time, batch, device, dtype)
            ti = torch.full((batch,), self.model_time, device=device, dtype=dtype)
            self._time_input = ti
        return ti


def filled(value: float | Tensor, batch: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """A (batch,) tensor of one value: torch.full of a float, or a 0-d tensor expanded (its gradient kept)."""
    if isinstance(value, Tensor):
        return value.to(device=device, dtype=dtype).expand(batch)
    return torch.full((batch,), value, device=device, dtype=dtype)


def time_input_dtype(state_dtype: torch.dtype) -> torch.dtype:
    """float64 states feed float64 times; every other dtype feeds float32 (bf16 cannot hold t = 999)."""
    return torch.float64 if state_dtype == torch.float64 else torch.float32


def make_points(schedule: Schedule, t: Tensor | float | list[float]) -> list[Point]:
    """All schedule quantities at each t, computed vectorised in float64 on the CPU (t checked to be in range)."""
    t = as_f64(t).detach().cpu().reshape(-1)
    schedule.check_times(t)
    c = schedule.point_columns(t)
    columns = (t, c["log_alpha"], c["alpha"], c["sigma"], c["lam"], c["sigma_bar"], c["f"], c["g2"],
               c["d_alpha"], c["d_sigma"], schedule.model_time(t))
    rows = zip(*(col.tolist() for col in columns))
    return [Point(*row) for row in rows]


def differentiable_points(schedule: Schedule, t: Tensor) -> list[Point]:
    """Points whose values are 0-d float64 tensors, functions of the 1-D times t (which may require grad): the nodes
    of a differentiable plan (diffsolve.solvers.exp.weighted). Not shared, not cached: their graphs are per call."""
    t = as_f64(t).reshape(-1)
    schedule.check_times(t)
    c = schedule.point_columns(t)
    columns = (t, c["log_alpha"], c["alpha"], c["sigma"], c["lam"], c["sigma_bar"], c["f"], c["g2"],
               c["d_alpha"], c["d_sigma"], schedule.model_time(t))
    return [Point(*(col[i] for col in columns)) for i in range(t.numel())]


def shared_points(schedule: Schedule, t: Tensor) -> list[Point]:
    """`make_points` of a 1-D float64 CPU tensor of checked times, shared by every grid of equal times on an
    equal schedule (and so are the points' cached time inputs): a grid built again costs a lookup."""
    return POINTS.get((schedule, tuple(t.tolist())), lambda: make_points(schedule, t))


def make_point(schedule: Schedule, t: Tensor | float) -> Point:
    """The schedule quantities at one time t."""
    return make_points(schedule, t)[0]
