"""Compiled step coefficients shared by equal grids: a bounded cache keyed by value, never by id or name.

A plan (the exponential integrators') or a Runge–Kutta coefficient table depends only on the solver (compared
by value), its options, and the grid's values (its nodes' α, σ, λ, or its times on its schedule); two grid
objects with equal values share one entry, so sampling again with a freshly built grid skips the rebuild.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from ..grids import Grid

SIZE = 128  # entries kept (least recently used first out); a plan of 1000 steps is ~1 MB of Python floats


class ValueCache:
    """An LRU map from hashable value keys to built objects."""

    def __init__(self, size: int = SIZE):
        self.size = size
        self._store: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The entry for `key`, built once by build() while it stays among the `size` most recently used."""
        if key in self._store:
            self._store.move_to_end(key)
            return self._store[key]
        value = build()
        self._store[key] = value
        if len(self._store) > self.size:
            self._store.popitem(last=False)
        return value

    def clear(self) -> None:
        self._store.clear()

    def __len__(self) -> int:
        return len(self._store)


PLANS = ValueCache()


def node_values(grid: Grid) -> tuple[tuple[float, float, float], ...]:
    """(α, σ, λ) at every grid time: all a multistep plan depends on (computed once per grid object)."""
    return grid.memo("node-values", lambda: tuple((p.alpha, p.sigma, p.lam) for p in grid.points))


def time_values(grid: Grid) -> tuple[Any, tuple[float, ...]]:
    """The schedule and the grid times: what coefficients needing the schedule between nodes depend on."""
    return grid.memo("time-values", lambda: (grid.schedule, tuple(grid.t.tolist())))


def shared(grid: Grid, key: Hashable, value_key: Hashable, build: Callable[[], Any]) -> Any:
    """grid.memo(key) backed by the shared cache under (key, value_key): built once per distinct grid value."""
    return grid.memo(key, lambda: PLANS.get((key, value_key), build))
