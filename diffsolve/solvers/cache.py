"""Compiled step coefficients shared by equal grids: a bounded cache keyed by value, never by id or name.

A plan (the exponential integrators') or a Runge–Kutta coefficient table depends only on the solver (compared
by value), its options, and the grid's values (its nodes' α, σ, λ, or its times on its schedule); two grid
objects with equal values share one entry, so sampling again with a freshly built grid skips the rebuild.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from ..grids import Grid
from ..valuecache import ValueCache

SIZE = 128  # entries kept (least recently used first out); a plan of 1000 steps is ~1 MB of Python floats

PLANS = ValueCache(SIZE)


def node_values(grid: Grid) -> tuple[tuple[float, float, float], ...]:
    """(α, σ, λ) at every grid time: all a multistep plan depends on (computed once per grid object)."""
    return grid.memo("node-values", lambda: tuple((p.alpha, p.sigma, p.lam) for p in grid.points))


def time_values(grid: Grid) -> tuple[Any, tuple[float, ...]]:
    """The schedule and the grid times: what coefficients needing the schedule between nodes depend on."""
    return grid.memo("time-values", lambda: (grid.schedule, tuple(grid.t.tolist())))


def shared(grid: Grid, key: Hashable, value_key: Hashable, build: Callable[[], Any]) -> Any:
    """grid.memo(key) backed by the shared cache under (key, value_key): built once per distinct grid value."""
    return grid.memo(key, lambda: PLANS.get((key, value_key), build))
