"""A bounded least-recently-used map from value keys to built objects (never keyed by id or name).

Grid times, schedule points and solver plans are pure functions of values (a schedule compared by value,
a step count, float times); equal values share one entry, so sampling again skips the rebuild.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class ValueCache:
    """An LRU map holding at most `size` entries, or entries of total `weigh` at most `size`."""

    def __init__(self, size: int, weigh: Callable[[Any], int] | None = None):
        self.size = size
        self.weigh = weigh
        self._store: OrderedDict[Hashable, Any] = OrderedDict()
        self._weight = 0

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The entry for `key`, built once by build() while it stays among the most recently used."""
        store = self._store
        if key in store:
            store.move_to_end(key)
            return store[key]
        value = build()
        store[key] = value
        self._weight += 1 if self.weigh is None else self.weigh(value)
        while self._weight > self.size and len(store) > 1:
            _, old = store.popitem(last=False)
            self._weight -= 1 if self.weigh is None else self.weigh(old)
        return value

    def clear(self) -> None:
        self._store.clear()
        self._weight = 0

    def __len__(self) -> int:
        return len(self._store)
