"""Benchmark problems by name: `get("gmm-64")`, `PROBLEMS`, `register(name, factory)`.

Factories are called once, on first use, so registering an expensive problem (a trained network)
costs nothing until it is asked for.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import DiffsolveError, unknown_name
from .base import Problem
from .gmm import GaussianMixture

PROBLEMS: dict[str, Callable[[], Problem]] = {}
_BUILT: dict[str, Problem] = {}


def register(name: str, factory: Callable[[], Problem]) -> None:
    """Add a problem factory under a unique name."""
    if name in PROBLEMS:
        raise DiffsolveError(f"a problem named {name!r} is already registered")
    PROBLEMS[name] = factory


def get(name: str | Problem) -> Problem:
    """The problem registered under `name` (built once); an unknown name lists the valid ones."""
    if isinstance(name, Problem):
        return name
    if name not in PROBLEMS:
        raise DiffsolveError(unknown_name("problem", str(name), list(PROBLEMS)))
    if name not in _BUILT:
        _BUILT[name] = PROBLEMS[name]()
    return _BUILT[name]


register("gmm-2d", lambda: GaussianMixture.random(
    dim=2, components=6, seed=2, mean_scale=1.0, std_range=(0.05, 0.3), name="gmm-2d",
    description="6-component 2-d Gaussian mixture, stds 0.05-0.3 (for pictures of samples and paths)",
))
register("gmm-64", lambda: GaussianMixture.random(
    dim=64, components=6, seed=64, mean_scale=0.3, std_range=(0.05, 0.3), name="gmm-64",
    description="6-component 64-d Gaussian mixture, means N(0, 0.3²), unequal weights, "
                "per-component diagonal stds 0.05-0.3",
))

from .trained import TrainedProblem  # noqa: E402  (trained networks: loaded on first use)

register("toy-2d", lambda: TrainedProblem.pretrained("toy-2d"))
register("digits-8x8", lambda: TrainedProblem.pretrained("digits-8x8"))
register("toy-2d-flow", lambda: TrainedProblem.pretrained("toy-2d-flow"))

__all__ = ["PROBLEMS", "GaussianMixture", "Problem", "get", "register"]
