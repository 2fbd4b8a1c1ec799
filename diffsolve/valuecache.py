"""The one cache type of the package: a bounded least-recently-used map keyed by values (`value_key`).

Every process-wide cache (grid times, schedule points, compiled solver plans, option checks that passed,
counter words of the per-sample noise, built and resolved problems, CUDA-graph captures) is a ValueCache
whose keys are values: schedules and solvers compare by value, numbers and strings with their type, containers
element-wise, tensors by dtype, shape, device and contents. Equal values share one entry; nothing is keyed by
id() or by a name standing in for a value.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


def value_key(v: Any) -> Hashable:
    """A hashable key equal exactly for equal values: numbers and strings with their type (1, 1.0 and True differ),
    lists/tuples/dicts element-wise, tensors by dtype, shape, device and values; any other hashable object as itself
    (its own __eq__: by value for schedules, solvers and frozen dataclasses), an unhashable one by identity (the key
    holds the object, so its id is never reused while the entry lives)."""
    if v is None or isinstance(v, (bool, int, float, str, complex)):
        return (type(v).__name__, v)
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(value_key(e) for e in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((str(k), value_key(e)) for k, e in v.items())))
    if _is_tensor(v):
        return ("tensor", v.dtype, tuple(v.shape), str(v.device), tuple(v.detach().cpu().reshape(-1).tolist()))
    try:
        hash(v)
    except TypeError:
        return ("object", _Identity(v))
    return ("object", v)


def _is_tensor(v: Any) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(v, torch.Tensor)


class _Identity:
    """Hash and compare by identity while holding a strong reference (so the id stays reserved)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


class ValueCache:
    """An LRU map holding at most `size` entries (or entries of total `weigh` at most `size`); size None: no bound
    (a registry whose entries must live as long as the process, e.g. the problems of this process's cells)."""

    def __init__(self, size: int | None, weigh: Callable[[Any], int] | None = None):
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
        return self.put(key, build())

    def put(self, key: Hashable, value: Any) -> Any:
        """Store `value` under `key` (replacing an entry), evicting the least recently used beyond the bound."""
        store = self._store
        if key in store:
            self._weight -= 1 if self.weigh is None else self.weigh(store.pop(key))
        store[key] = value
        self._weight += 1 if self.weigh is None else self.weigh(value)
        while self.size is not None and self._weight > self.size and len(store) > 1:
            _, old = store.popitem(last=False)
            self._weight -= 1 if self.weigh is None else self.weigh(old)
        return value

    def peek(self, key: Hashable) -> Any:
        """The entry for `key`, or None (marked as recently used when found)."""
        if key in self._store:
            self._store.move_to_end(key)
            return self._store[key]
        return None

    def __contains__(self, key: Hashable) -> bool:
        return key in self._store

    def clear(self) -> None:
        self._store.clear()
        self._weight = 0

    def __len__(self) -> int:
        return len(self._store)
