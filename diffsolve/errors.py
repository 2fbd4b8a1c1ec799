"""Error types: every wrong input raises one of these with the value, what was expected and the fix."""

from __future__ import annotations


class DiffsolveError(ValueError):
    """Base class of diffsolve's input errors (a ValueError, so generic handlers still catch it)."""


class GridError(DiffsolveError):
    """A step grid that is not strictly monotone, not finite, or outside the schedule's range."""


class SolverError(DiffsolveError):
    """Unknown solver name, too few steps for a solver's order, or an option it does not take."""


class ModelError(DiffsolveError):
    """A model that returns a wrong shape, NaN/Inf, or lives on another device or dtype."""


class ScheduleError(DiffsolveError):
    """A schedule built from invalid parameters, or asked for a time outside its range."""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> str:
    """Message for an unknown registry name, listing the valid ones."""
    return f"unknown {kind} {name!r}; valid {kind} names are: {', '.join(sorted(valid))}"
