"""The seeded Brownian path shared by every stochastic solver, in the solver time τ.

Reverse-time SDEs run in τ = −t (forward ones in τ = t), so τ always increases. The path is a
torchsde BrownianInterval over the schedule's whole range in τ, with a dyadic (halfway) tree and
space-time Lévy area: W(τ) then depends on the seed alone, not on the grid, its step count, its end
points or the order of queries, and every solver (Euler–Maruyama, SRK, DDPM, SDE-DPM-Solver++)
reads the same W. Sums of increments over a fine grid equal those over a coarse one, which is what
makes strong errors (coarse vs fine solution on one path) meaningful.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torchsde
from torch import Tensor

from ..dynamics import Dynamics
from ..errors import SolverError
from ..grids import Grid

LEVY_AREA = "space-time"  # one kind for all solvers: W's samples depend on it, so it must not vary by solver


def tau_range(dynamics: Dynamics) -> tuple[float, float]:
    """The schedule's range [t_min, t_max] in solver time τ = ±t, as an increasing pair."""
    lo, hi = float(dynamics.schedule.t_min), float(dynamics.schedule.t_max)
    return (-hi, -lo) if dynamics.time_reversed else (lo, hi)


def grid_taus(dynamics: Dynamics, grid: Grid) -> list[float]:
    """The grid's times in solver time τ (increasing), as Python floats."""
    return (-grid.t if dynamics.time_reversed else grid.t).tolist()


def brownian_path(
    dynamics: Dynamics, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str,
    seed: int | None,
) -> torchsde.BrownianInterval:
    """W on the schedule's τ-range for states of `shape` (flattened to (batch, dim)), fixed by `seed`.

    tol = 1e-8 of the span: query times are resolved on the dyadic tree to that resolution, so W at a
    time depends only on the seed (seed=None draws a fresh one).
    """
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise SolverError(f"seed must be a non-negative integer or None, got {seed!r}")
    t0, t1 = tau_range(dynamics)
    batch = shape[0]
    dim = math.prod(shape[1:]) if len(shape) > 1 else 1
    return torchsde.BrownianInterval(
        t0=t0, t1=t1, size=(batch, dim), dtype=dtype, device=device, entropy=seed,
        tol=1e-8 * (t1 - t0), halfway_tree=True, levy_area_approximation=LEVY_AREA,
    )


def grid_path(
    dynamics: Dynamics, grid: Grid, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str,
    seed: int | None,
) -> torchsde.BrownianInterval:
    """A cheaper seeded path whose tree follows the grid's own steps (pass it as bm=).

    Reproducible for one seed and one grid, and a valid Brownian motion, so weak errors (distances of
    sample sets) are unaffected; but W depends on the grid's times, so two grids do not share a path:
    never use it for strong errors. A query costs a few normal draws instead of ~27 tree levels.
    """
    taus = grid_taus(dynamics, grid)
    dim = math.prod(shape[1:]) if len(shape) > 1 else 1
    return torchsde.BrownianInterval(
        t0=taus[0], t1=taus[-1], size=(shape[0], dim), dtype=dtype, device=device, entropy=seed,
        dt=min(b - a for a, b in zip(taus[:-1], taus[1:])), levy_area_approximation=LEVY_AREA,
    )


def check_path(bm: Any, dynamics: Dynamics, grid: Grid, x: Tensor, need_levy_area: bool = False) -> None:
    """Raise unless `bm` is a Brownian path in τ covering the grid, with (batch, dim) noise for x."""
    if not callable(bm) or not hasattr(bm, "shape"):
        raise SolverError(
            f"bm must be a torchsde Brownian path (e.g. diffsolve.solvers.brownian.brownian_path(...)), "
            f"got {type(bm).__name__}"
        )
    want = (x.shape[0], math.prod(x.shape[1:]) if x.ndim > 1 else 1)
    if tuple(bm.shape) != want:
        raise SolverError(
            f"bm has shape {tuple(bm.shape)} but the state {tuple(x.shape)} needs Brownian increments of "
            f"shape {want} (batch, flattened dimension); build it with brownian_path(dynamics, x.shape, ...)"
        )
    taus = grid_taus(dynamics, grid)
    start, end = getattr(bm, "_start", None), getattr(bm, "_end", None)
    if start is not None and end is not None and (taus[0] < start or taus[-1] > end):
        raise SolverError(
            f"bm covers τ ∈ [{start:.6g}, {end:.6g}] but the grid needs [{taus[0]:.6g}, {taus[-1]:.6g}] "
            f"(τ = {'−t' if dynamics.time_reversed else 't'}); build the path with brownian_path(dynamics, ...)"
        )
    if need_levy_area and getattr(bm, "levy_area_approximation", "none") == "none":
        raise SolverError(
            "this solver needs the space-time Lévy area of the path, but bm was built with "
            "levy_area_approximation='none'; build it with brownian_path(dynamics, ...) ('space-time')"
        )


def path_for(
    dynamics: Dynamics, grid: Grid, x: Tensor, seed: int | None, bm: Any, need_levy_area: bool = False,
) -> Any:
    """The given path after checks, or a fresh one from `seed`."""
    if bm is None:
        return brownian_path(dynamics, tuple(x.shape), x.dtype, x.device, seed)
    if seed is not None:
        raise SolverError("give either seed= or bm=, not both: a given path already fixes the noise")
    check_path(bm, dynamics, grid, x, need_levy_area)
    return bm


def check_seed_or_path(options: dict[str, Any]) -> None:
    """seed= and bm= both fix the noise: at most one of them."""
    if options.get("seed") is not None and options.get("bm") is not None:
        raise SolverError("give either seed= or bm=, not both: a given path already fixes the noise")


def increments(bm: Any, taus: list[float]) -> list[Tensor]:
    """ΔW_i = W(τ_{i+1}) − W(τ_i) on consecutive grid times, each of shape (batch, dim)."""
    return [bm(a, b) for a, b in zip(taus[:-1], taus[1:])]
