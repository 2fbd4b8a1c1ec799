"""SDE solvers through torchsde: its methods' steps, on the shared seeded Brownian path.

Reverse-time SDEs run in τ = −t (torchsde integrates forward in its time): the drift flips sign,
the diffusion does not (a time-reversed Brownian motion is a Brownian motion). The path comes from
`brownian.brownian_path` (dyadic tree, space-time Lévy area), so one seed is one path whatever the grid.

Methods for the VP-SDE, whose noise √β(t) dW is additive (independent of x). For additive noise Itô
and Stratonovich coincide (the Itô–Stratonovich correction ½ g ∂g/∂x vanishes), so the Itô methods
apply unchanged, and the strong orders are those of the additive-noise theory:
- euler_maruyama: torchsde 'euler', y ← y + f Δτ + g ΔW; strong order 1 (0.5 for multiplicative noise).
- srk: torchsde 'srk' on noise_type 'additive', i.e. Rößler's SRA1 (2 drift stages, uses the space-time
  Lévy area); strong order 1.5. torchsde's Heun/midpoint (Stratonovich) would only reach order 1 here.

torchsde is stepped directly (one solver object per solve, `step` per grid interval) rather than by
one `sdeint` call per interval: `sdeint` re-validates its input on every call by evaluating the drift
once, which would double the network evaluations of Euler–Maruyama.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchsde._core import base_sde
from torchsde._core import methods as torchsde_methods

from ..dynamics import Dynamics
from ..errors import SolverError
from ..grids import Grid
from ..points import Point, make_point
from .base import Solver, node_points, register
from .brownian import check_seed_or_path, grid_taus, path_for
from .contract import ADDITIVE_SDE, ANY_SDE
from .options import PATH, SEED


class _TorchsdeAdapter(torch.nn.Module):
    """Presents dynamics in τ = ±t to torchsde, on flattened (batch, dim) states.

    f remembers its last call: torchsde's SRA1 re-evaluates the first stage's drift at the same
    (τ, y) inside the second stage, and the memo makes that free (2 network calls per step, not 3).
    """

    sde_type = "ito"

    def __init__(self, dynamics: Dynamics, shape: tuple[int, ...], sign: float, points: dict[float, Point]):
        super().__init__()
        self.dynamics, self.shape, self.sign, self.points = dynamics, shape, sign, points
        self.noise_type = "additive" if dynamics.additive_noise else "diagonal"
        self._memo: tuple[float, Tensor, Tensor] | None = None

    def _point(self, tau: Tensor | float) -> Point:
        key = float(tau)  # τ lives on the host (the grid's float64 times), so no device sync
        p = self.points.get(key)
        if p is None:  # a stage time between grid nodes, met once per step
            p = make_point(self.dynamics.schedule, self.sign * key)
            self.points[key] = p
        return p

    def f(self, tau: Tensor, y: Tensor) -> Tensor:
        key = float(tau)
        memo = self._memo
        if memo is not None and memo[0] == key and memo[1] is y:
            return memo[2]
        drift = self.dynamics.drift(y.reshape(self.shape), self._point(key)).reshape(y.shape)
        out = drift if self.sign > 0 else drift.neg()
        self._memo = (key, y, out)
        return out

    def g(self, tau: Tensor, y: Tensor) -> Tensor:
        """The diagonal diffusion as a (batch, dim) tensor."""
        return self.dynamics.diffusion(y.reshape(self.shape), self._point(tau)).reshape(y.shape)

    def g_prod(self, tau: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """g ΔW for diagonal g, without forming the (batch, dim, dim) matrix of noise_type 'additive'."""
        return self.g(tau, y) * v


class TorchsdeSolver(Solver):
    """torchsde's fixed-step `method`, stepped exactly on the grid with one shared Brownian path."""

    family = "torchsde"
    schema = (SEED, PATH)

    def __init__(
        self, name: str, method: str, order: float, per_step: int, description: str, additive_only: bool = False,
    ):
        self.name, self.method, self.order, self._per_step = name, method, order, per_step
        self.description = description
        self.integrates = ADDITIVE_SDE if additive_only else ANY_SDE

    def nfe_for(self, steps: int) -> int:
        return self._per_step * steps

    def check_together(self, options: dict[str, Any]) -> None:
        check_seed_or_path(options)

    def integrate(
        self, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool,
        seed: int | None = None, bm: Any = None,
    ) -> tuple[Tensor, list[Tensor]]:
        if grid.decreasing != dynamics.time_reversed:
            raise SolverError(
                f"{dynamics!r} runs with t {'decreasing' if dynamics.time_reversed else 'increasing'}, "
                f"but the grid goes from t={float(grid.t[0]):.4g} to t={float(grid.t[-1]):.4g}; reverse the grid"
            )
        sign = -1.0 if dynamics.time_reversed else 1.0
        shape = tuple(x.shape)
        taus = grid_taus(dynamics, grid)
        adapter = _TorchsdeAdapter(dynamics, shape, sign, dict(zip(taus, node_points(dynamics, grid))))
        path = path_for(dynamics, grid, x, seed, bm, need_levy_area=self.method == "srk")
        stepper = torchsde_methods.select(method=self.method, sde_type="ito")(
            sde=base_sde.ForwardSDE(adapter), bm=path, dt=taus[1] - taus[0], adaptive=False,
            rtol=0.0, atol=0.0, dt_min=0.0, options={},
        )
        tau_t = list(torch.tensor(taus, dtype=torch.float64).unbind())  # 0-d CPU tensors, as torchsde steps on
        y = x.reshape(shape[0], -1)
        extra = stepper.init_extra_solver_state(tau_t[0], y)
        trajectory: list[Tensor] = []
        for i in range(grid.steps):
            y, extra = stepper.step(tau_t[i], tau_t[i + 1], y, extra)
            if record:
                trajectory.append(y.reshape(shape))
        return y.reshape(shape), trajectory


register(TorchsdeSolver(
    "euler_maruyama", "euler", 1.0, 1,
    "Euler–Maruyama (torchsde 'euler'); strong order 1 for the VP-SDE's additive noise, 0.5 in general",
))
register(TorchsdeSolver(
    "srk", "srk", 1.5, 2,
    "stochastic Runge–Kutta SRA1 (Rößler 2010, torchsde 'srk', additive noise, space-time Lévy area); "
    "strong order 1.5, 2 evaluations per step",
    additive_only=True,
))
