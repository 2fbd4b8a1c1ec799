"""The one validation layer: `Option` states what a value must be; every boundary checks values with it.

Solver schemas (diffsolve.solvers), the command line, suite files, training, likelihood and tuning all
describe their arguments as Options, so a wrong value gets the same kind of message everywhere: it names
the argument and the value, says what was expected, and how to fix it. `positive_int`, `positive_float`
and `seed_list` are the common cases as one call.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import DiffsolveError

MIN_TOL = 1e-15  # below ~5 float64 round-offs (eps ≈ 2.2e-16) no error control can hold: its estimate overflows
KINDS = ("bool", "int", "float", "choice", "seed", "generator", "path", "pattern", "table", "dict", "str")


@dataclass(frozen=True)
class Option:
    """One argument: `kind` (see KINDS), default, one-line doc, and its range (low/high), choices or table keys.

    int/float: low ≤ v ≤ high (low excluded when open_low, high excluded when open_high), floats finite;
    choice: v in choices; pattern: a list of ints each in choices; table: a dict whose keys are in `keys`;
    dict: any dict (its keys checked elsewhere); str: a non-empty string; optional: None allowed.
    """

    name: str
    kind: str
    default: Any = None
    doc: str = ""
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple[Any, ...] = ()
    keys: tuple[str, ...] = ()
    optional: bool = False
    open_high: bool = False

    def expectation(self) -> str:
        """What a valid value is, in words."""
        return _EXPECT[self.kind](self) + (" or None" if self.optional else "")

    def valid(self, value: Any) -> bool:
        """Whether `value` fits this option (without raising)."""
        if value is None:
            return self.optional
        if self.kind not in _VALID:
            raise DiffsolveError(f"internal: option {self.name!r} has unknown kind {self.kind!r}; kinds are "
                                 f"{', '.join(KINDS)}")
        return _VALID[self.kind](self, value)

    def check(self, value: Any, *, owner: str = "", fix: str = "",
              error: type[DiffsolveError] = DiffsolveError) -> Any:
        """`value` (ints as int, floats as float) unless it does not fit: then raise `error` naming the argument
        (prefixed by `owner`, e.g. "solver 'ddim'"), the value, the expectation and the fix."""
        if self.valid(value):
            if self.kind == "int" and value is not None:
                return int(value)
            if self.kind == "float" and value is not None:
                return float(value)
            return value
        extra = ""
        if self.kind == "table" and isinstance(value, Mapping):
            extra = f" (unknown key(s): {', '.join(sorted(str(k) for k in value if k not in self.keys))})"
        doc = f" ({self.doc})" if self.doc else ""
        fix = fix or f"pass a valid value or leave it out for the default {self.default!r}"
        raise error(f"{owner + ': ' if owner else ''}{self.name} must be {self.expectation()}, got "
                    f"{value!r}{extra}{doc}; {fix}")

    def read(self, text: str) -> Any:
        """The value `text` (from a spec such as 'unipc:lower_order_final=1') means for this option: for a bool,
        true/false/1/0 (any case); otherwise JSON (numbers, true, null, lists) or else the text itself."""
        import json

        word = text.strip()
        if self.kind == "bool" and word.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[word.lower()]
        try:
            return json.loads(word)
        except json.JSONDecodeError:
            return word

    def describe(self) -> str:
        """'name: expectation, default d — doc' for listings."""
        return f"{self.name}: {self.expectation()}, default {self.default!r} — {self.doc}"


_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False}


def _number_text(o: Option) -> str:
    what = "an integer" if o.kind == "int" else "a finite number"
    parts = []
    if o.low is not None:
        parts.append(f"{'>' if o.open_low else '>='} {o.low:g}")
    if o.high is not None:
        parts.append(f"{'<' if o.open_high else '<='} {o.high:g}")
    return what + (" " + " and ".join(parts) if parts else "")


def _number_valid(o: Option, value: Any) -> bool:
    number = numbers.Integral if o.kind in ("int", "seed") else numbers.Real
    if isinstance(value, bool) or not isinstance(value, number):
        return False
    try:
        v = float(value)
    except OverflowError:  # an int too large for a float
        return o.kind != "float" and (o.high is None) and (o.low is None or value > o.low)
    if not math.isfinite(v):
        return False
    low = 0 if o.kind == "seed" else o.low
    if low is not None and (v <= low if o.open_low else v < low):
        return False
    return o.high is None or (v < o.high if o.open_high else v <= o.high)


def _is_torch(value: Any, name: str) -> bool:
    """isinstance(value, torch.<name>), without importing torch here (the command line starts without it)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, getattr(torch, name))


_EXPECT = {
    "bool": lambda o: "True or False",
    "choice": lambda o: "one of " + ", ".join(map(repr, o.choices)),
    "int": _number_text,
    "float": _number_text,
    "seed": lambda o: "a non-negative integer, or one per sample (a list or 1-D integer tensor)",
    "generator": lambda o: "a torch.Generator",
    "path": lambda o: "a Brownian path (diffsolve.solvers.brownian.brownian_path(...))",
    "pattern": lambda o: "a list of integers, each one of " + ", ".join(map(str, o.choices)),
    "table": lambda o: "a dict with keys among " + ", ".join(o.keys),
    "dict": lambda o: "a dict",
    "str": lambda o: "a non-empty string",
}
_VALID = {
    "bool": lambda o, v: isinstance(v, bool),
    "choice": lambda o, v: isinstance(v, str) and v in o.choices,
    "int": _number_valid,
    "float": _number_valid,
    # per-sample seeds (a list or tensor): the solver checks them (diffsolve.solvers.brownian.per_sample_seeds)
    "seed": lambda o, v: isinstance(v, (list, tuple)) or _is_torch(v, "Tensor") or _number_valid(o, v),
    "generator": lambda o, v: _is_torch(v, "Generator"),
    "path": lambda o, v: callable(v),
    "pattern": lambda o, v: isinstance(v, (list, tuple)) and len(v) > 0 and all(
        isinstance(e, int) and not isinstance(e, bool) and e in o.choices for e in v),
    "table": lambda o, v: isinstance(v, Mapping) and all(k in o.keys for k in v),
    "dict": lambda o, v: isinstance(v, Mapping),
    "str": lambda o, v: isinstance(v, str) and bool(v.strip()),
}


def positive_int(value: Any, name: str, fix: str = "", *, minimum: int = 1,
                 error: type[DiffsolveError] = DiffsolveError) -> int:
    """value as an int ≥ minimum (bools, floats and strings refused)."""
    return Option(name, "int", low=minimum).check(value, fix=fix, error=error)


def positive_float(value: Any, name: str, fix: str = "", *, below: float | None = None,
                   error: type[DiffsolveError] = DiffsolveError) -> float:
    """value as a finite float > 0 (and < below when given); bools and strings refused."""
    return Option(name, "float", low=0.0, open_low=True, high=below, open_high=True).check(value, fix=fix,
                                                                                           error=error)


def seed_list(values: Any, name: str, *, error: type[DiffsolveError] = DiffsolveError) -> list[int]:
    """A non-empty list of non-negative integer seeds (a single int is a list of one)."""
    items = [values] if isinstance(values, numbers.Integral) and not isinstance(values, bool) else values
    if not isinstance(items, (list, tuple)) or not items:
        raise error(f"{name} must be a non-empty list of non-negative integers, e.g. [0], got {values!r}")
    return [Option(name, "int", low=0).check(s, fix="seeds are integers >= 0, e.g. [0, 1]", error=error)
            for s in items]


def tolerance(name: str, default: float | None, doc: str, below: float | None = 1.0, *,
              optional: bool = False) -> Option:
    """rtol / atol of an error control: a finite number >= MIN_TOL and < `below` (1 unless given: an error of 100 %
    of the state, or of 1 in its units, controls nothing; None lifts the bound)."""
    return Option(name, "float", default, f"{doc}; at least {MIN_TOL:g}, float64's round-off", low=MIN_TOL, high=below,
                  open_high=below is not None, optional=optional)
