"""ODE solvers of torchdiffeq: adaptive (dopri5, dopri8, bosh3, …) and its fixed-grid methods.

Adaptive methods pick their own steps between the grid's end points (the grid only says where
to start, stop and, with record=True, where to report); fixed-grid methods step on the grid,
given explicitly. The NFE is what the model counted, rejected steps included.
"""

from __future__ import annotations

from typing import Any

import torch
import torchdiffeq
from torch import Tensor

from ..checks import Option, tolerance
from ..dynamics import Dynamics
from ..grids import Grid
from ..points import make_point
from .base import Solver, node_points, register

ADAPTIVE_METHODS = {
    "dopri5": 5,
    "dopri8": 8,
    "bosh3": 3,
    "fehlberg2": 2,
    "adaptive_heun": 2,
}
# torchdiffeq's own options={} keys (its solvers' keyword arguments); any other key is a misspelling
ADAPTIVE_KEYS = ("first_step", "min_step", "max_step", "step_t", "jump_t", "safety", "ifactor", "dfactor",
                 "max_num_steps", "dtype", "norm")
FIXED_KEYS = ("step_size", "grid_constructor", "interp", "perturb", "norm")
ADAMS_KEYS = FIXED_KEYS + ("max_iters", "max_order")
FIXED_METHODS = {"euler": (1, 1), "midpoint": (2, 2), "rk4": (4, 4), "heun2": (2, 2), "heun3": (3, 3),
                 "explicit_adams": (4, None), "implicit_adams": (4, None)}


class TorchdiffeqSolver(Solver):
    """odeint(f, y0, t, method) of torchdiffeq on the dynamics' variable."""

    family = "torchdiffeq"

    def __init__(self, method: str, order: int, adaptive: bool, per_step: int | None):
        self.method, self.order, self.adaptive, self._per_step = method, order, adaptive, per_step
        self.name = method if adaptive else f"torchdiffeq_{method}"
        keys = ADAPTIVE_KEYS if adaptive else ADAMS_KEYS if method.endswith("_adams") else FIXED_KEYS
        table = Option("options", "table", None, "torchdiffeq's own solver options", keys=keys, optional=True)
        self.schema = (
            tolerance("rtol", 1e-5, "relative tolerance of the error control"),
            tolerance("atol", 1e-5, "absolute tolerance of the error control"),
            table,
        ) if adaptive else (table,)
        kind = "adaptive, error-controlled" if adaptive else "fixed-grid, steps on the grid"
        self.description = f"torchdiffeq '{method}' ({kind}), order {order}"

    def nfe_for(self, steps: int) -> int | None:
        return None if self._per_step is None else self._per_step * steps

    def integrate(
        self, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool,
        rtol: float = 1e-5, atol: float = 1e-5, options: dict[str, Any] | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        schedule = dynamics.schedule
        nodes = node_points(dynamics, grid)
        s = dynamics.variable_of(grid.t)
        ends = {float(s[0]): nodes[0], float(s[-1]): nodes[-1]}
        t_lo, t_hi = float(grid.t.min()), float(grid.t.max())
        model = dynamics.model
        checking = self.adaptive and model is not None and model.check_finite

        def f(s_now: Tensor, y: Tensor) -> Tensor:
            # Adaptive control syncs anyway; reading s here costs nothing more.
            key = float(s_now)
            p = ends.get(key)
            if p is None:  # stage times lie inside the grid's span; clamp the inverse map's round-off at its ends
                t = dynamics.time_of(torch.tensor(key, dtype=torch.float64)).clamp(t_lo, t_hi)
                p = make_point(schedule, t)
            drift = dynamics.drift(y, p)
            if checking:  # NaN/Inf from the network (or the state) named at once, before the step control reads it
                model.raise_if_not_finite()  # type: ignore[union-attr]
            return drift

        y0 = dynamics.to_state(x, nodes[0])
        use_grid = record or not self.adaptive
        ts = (s if use_grid else s[[0, -1]]).to(y0.device)
        kwargs: dict[str, Any] = {"method": self.method, "options": dict(options or {})}
        if self.adaptive:
            # Adaptive steps may overshoot the last output time and interpolate back; forcing a
            # step boundary at every output time keeps f inside the schedule's range.
            kwargs["options"].setdefault("step_t", ts)
            kwargs.update(rtol=rtol, atol=atol)
        ys = torchdiffeq.odeint(f, y0, ts, **kwargs)
        final = dynamics.from_state(ys[-1], nodes[-1])
        trajectory = [dynamics.from_state(ys[i], nodes[i]) for i in range(1, len(nodes))] if record else []
        return final, trajectory


for _m, _o in ADAPTIVE_METHODS.items():
    register(TorchdiffeqSolver(_m, _o, adaptive=True, per_step=None))
for _m, (_o, _per) in FIXED_METHODS.items():
    register(TorchdiffeqSolver(_m, _o, adaptive=False, per_step=_per))
