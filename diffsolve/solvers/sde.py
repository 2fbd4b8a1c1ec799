"""SDE solvers through torchsde, on a seeded Brownian path that does not depend on the grid.

Reverse-time SDEs run in τ = −t (torchsde integrates forward in its time): the drift flips sign,
the diffusion does not (a time-reversed Brownian motion is a Brownian motion). The path is a
torchsde BrownianInterval with a dyadic (halfway) tree, so one seed gives one path whatever the
steps: solutions on coarse and fine grids share their noise, which makes strong error meaningful.
"""

from __future__ import annotations

from typing import Any

import torch
import torchsde
from torch import Tensor

from ..dynamics import Dynamics
from ..errors import SolverError
from ..grids import Grid
from ..points import Point, make_point
from .base import Solver, node_points, register


def brownian_path(
    grid: Grid, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, seed: int | None,
    levy_area: str = "none",
) -> torchsde.BrownianInterval:
    """A Brownian motion on the grid's τ-interval, fixed by `seed` alone (dyadic tree, tol 1e-10 of the span)."""
    sign = -1.0 if grid.decreasing else 1.0
    t0, t1 = sign * float(grid.t[0]), sign * float(grid.t[-1])
    batch = shape[0]
    dim = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
    return torchsde.BrownianInterval(
        t0=t0, t1=t1, size=(batch, dim), dtype=dtype, device=device,
        entropy=seed, tol=1e-10 * abs(t1 - t0), halfway_tree=True, levy_area_approximation=levy_area,
    )


class _TorchsdeAdapter(torch.nn.Module):
    """Presents dynamics in τ = ±t to torchsde, on flattened (batch, dim) states."""

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, dynamics: Dynamics, shape: tuple[int, ...], sign: float, points: dict[float, Point]):
        super().__init__()
        self.dynamics, self.shape, self.sign, self.points = dynamics, shape, sign, points

    def _point(self, tau: Tensor) -> Point:
        key = float(tau)  # τ lives on the host (the grid's float64 times), so no device sync
        p = self.points.get(key)
        if p is None:
            p = make_point(self.dynamics.schedule, self.sign * key)
            self.points[key] = p
        return p

    def f(self, tau: Tensor, y: Tensor) -> Tensor:
        drift = self.dynamics.drift(y.reshape(self.shape), self._point(tau))
        return (drift * self.sign).reshape(y.shape)

    def g(self, tau: Tensor, y: Tensor) -> Tensor:
        return self.dynamics.diffusion(y.reshape(self.shape), self._point(tau)).reshape(y.shape)


class TorchsdeSolver(Solver):
    """torchsde's fixed-step `method`, stepped exactly on the grid with one shared Brownian path."""

    stochastic = True
    options = ("seed", "bm")

    def __init__(self, name: str, method: str, order: float, per_step: int, levy_area: str, description: str):
        self.name, self.method, self.order, self._per_step = name, method, order, per_step
        self.levy_area, self.description = levy_area, description

    def nfe_for(self, steps: int) -> int:
        return self._per_step * steps

    def integrate(
        self, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool,
        seed: int | None = None, bm: Any = None,
    ) -> tuple[Tensor, list[Tensor]]:
        if grid.decreasing != dynamics.time_reversed:
            raise SolverError(
                f"{dynamics!r} runs with t {'decreasing' if dynamics.time_reversed else 'increasing'}, "
                f"but the grid goes from t={float(grid.t[0]):.4g} to t={float(grid.t[-1]):.4g}; reverse the grid"
            )
        sign = -1.0 if grid.decreasing else 1.0
        shape = tuple(x.shape)
        nodes = node_points(dynamics, grid)
        taus = (sign * grid.t).tolist()
        adapter = _TorchsdeAdapter(dynamics, shape, sign, dict(zip(taus, nodes)))
        if bm is None:
            bm = brownian_path(grid, shape, x.dtype, x.device, seed, self.levy_area)
        y = x.reshape(shape[0], -1)
        trajectory: list[Tensor] = []
        for i in range(grid.steps):
            ts = torch.tensor(taus[i : i + 2], dtype=torch.float64)
            dt = (taus[i + 1] - taus[i]) * (1 + 1e-9)  # one step per interval, clamped to its end
            y = torchsde.sdeint(adapter, y, ts, bm=bm, method=self.method, dt=dt)[-1]
            if record:
                trajectory.append(y.reshape(shape))
        return y.reshape(shape), trajectory


register(TorchsdeSolver(
    "euler_maruyama", "euler", 1.0, 1, "none",
    "Euler–Maruyama (torchsde 'euler'); strong order 1 for the VP-SDE's additive noise, 0.5 in general",
))
