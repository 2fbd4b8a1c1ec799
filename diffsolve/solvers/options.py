"""Solver options as a small schema: each option's type, range or choices, default and one-line meaning.

Every solver declares `schema` (a tuple of `Option`); `check_options` validates a call's options against it
once, before any work, and every wrong value raises a SolverError naming the value, what was expected and
the fix. Old option names a solver renamed are listed in `renamed` and rejected with the new name.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SolverError

KINDS = ("bool", "int", "float", "choice", "seed", "generator", "path", "pattern", "table")


@dataclass(frozen=True)
class Option:
    """One option: `kind` (see KINDS), default, one-line doc, and its range (low/high), choices or table keys.

    int/float: low ≤ v ≤ high (low excluded when open_low), floats finite; choice: v in choices;
    pattern: a list of ints each in choices; table: a dict whose keys are in `keys`; optional: None allowed.
    """

    name: str
    kind: str
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple[Any, ...] = ()
    keys: tuple[str, ...] = ()
    optional: bool = False

    def expectation(self) -> str:
        """What a valid value is, in words."""
        n = self.name
        if self.kind == "bool":
            text = "True or False"
        elif self.kind == "choice":
            text = "one of " + ", ".join(map(repr, self.choices))
        elif self.kind in ("int", "float"):
            what = "an integer" if self.kind == "int" else "a finite number"
            if self.low is not None and self.high is not None:
                closed = f"{what} {n}={self.low}…{self.high}"
                text = f"{what} in ({self.low}, {self.high}]" if self.open_low else closed
            elif self.low is not None:
                text = f"{what} {n} {'>' if self.open_low else '>='} {self.low}"
            else:
                text = what
        elif self.kind == "seed":
            text = "a non-negative integer, or one per sample (a list or 1-D integer tensor)"
        elif self.kind == "generator":
            text = "a torch.Generator"
        elif self.kind == "path":
            text = "a Brownian path (diffsolve.solvers.brownian.brownian_path(...))"
        elif self.kind == "pattern":
            text = "a list of integers, each one of " + ", ".join(map(str, self.choices))
        else:
            text = "a dict with keys among " + ", ".join(self.keys)
        return text + (" or None" if self.optional else "")

    def valid(self, value: Any) -> bool:
        """Whether `value` fits this option (without raising)."""
        if value is None:
            return self.optional
        k = self.kind
        if k == "bool":
            return isinstance(value, bool)
        if k == "choice":
            return isinstance(value, str) and value in self.choices
        if k == "seed" and isinstance(value, (list, tuple, torch.Tensor)):
            return True  # per-sample seeds: the solver checks them (diffsolve.solvers.brownian.per_sample_seeds)
        if k in ("int", "float", "seed"):
            number = numbers.Integral if k in ("int", "seed") else numbers.Real
            if isinstance(value, bool) or not isinstance(value, number) or not math.isfinite(float(value)):
                return False
            low = 0 if k == "seed" else self.low
            if low is not None and (value <= low if self.open_low else value < low):
                return False
            return self.high is None or value <= self.high
        if k == "generator":
            return isinstance(value, torch.Generator)
        if k == "path":
            return callable(value)
        if k == "pattern":
            return isinstance(value, (list, tuple)) and len(value) > 0 and all(
                isinstance(v, int) and not isinstance(v, bool) and v in self.choices for v in value)
        if k == "table":
            return isinstance(value, Mapping) and all(key in self.keys for key in value)
        raise SolverError(f"internal: option {self.name!r} has unknown kind {k!r}; kinds are {', '.join(KINDS)}")

    def check(self, solver: str, value: Any) -> None:
        """Raise a SolverError naming the value, the expectation and the fix unless `value` fits."""
        if self.valid(value):
            return
        extra = ""
        if self.kind == "table" and isinstance(value, Mapping):
            extra = f" (unknown key(s): {', '.join(sorted(str(k) for k in value if k not in self.keys))})"
        raise SolverError(
            f"solver {solver!r}: {self.name}={value!r} is not valid{extra}; expected {self.expectation()} "
            f"({self.doc}); pass a valid value or leave it out for the default {self.default!r}"
        )

    def describe(self) -> str:
        """'name: expectation, default d — doc' for listings."""
        return f"{self.name}: {self.expectation()}, default {self.default!r} — {self.doc}"


def check_options(
    solver: str, schema: tuple[Option, ...], renamed: Mapping[str, str], options: Mapping[str, Any]
) -> None:
    """Unknown or renamed names first (listing the accepted ones), then every value against its Option."""
    by_name = {o.name: o for o in schema}
    old = sorted(k for k in options if k in renamed and k not in by_name)
    if old:
        raise SolverError(
            f"solver {solver!r}: option(s) {', '.join(old)} were renamed; use "
            + ", ".join(f"{k} → {renamed[k]}" for k in old)
        )
    unknown = sorted(set(options) - set(by_name))
    if unknown:
        raise SolverError(
            f"solver {solver!r} takes no option(s) {', '.join(unknown)}; it takes: {', '.join(by_name) or 'none'}"
        )
    for name, value in options.items():
        by_name[name].check(solver, value)


# ---- options shared by several solvers -----------------------------------------------------------------------
SEED = Option("seed", "seed", None, "seeds the shared Brownian path (None: a fresh one); a list, one seed per "
              "sample, draws each sample's noise on the grid from its own generator", optional=True)
PATH = Option("bm", "path", None, "a Brownian path to read the noise from instead of seed=", optional=True)
THRESHOLD = (
    Option("threshold", "float", None, "dynamic thresholding: the quantile ratio of |x̂0| clipped (Imagen: 0.995)",
           low=0.0, high=1.0, open_low=True, optional=True),
    Option("threshold_max", "float", 1.0, "the largest clip level s of dynamic thresholding", low=1.0),
)
FORM_DOC = "what the network output is integrated as: 'noise' (ε) or 'data' (x̂0)"
