"""Solver options as a small schema of `diffsolve.checks.Option`s (the one validation layer).

Every solver declares `schema` (a tuple of `Option`); `check_options` validates a call's options against it
once, before any work, and every wrong value raises a SolverError naming the value, what was expected and
the fix. Old option names a solver renamed are listed in `renamed` and rejected with the new name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..checks import Option
from ..errors import SolverError


def check_options(
    solver: str, schema: tuple[Option, ...], renamed: Mapping[str, str], options: Mapping[str, Any],
    fixed: Mapping[str, str] | None = None,
) -> None:
    """Unknown, renamed or fixed-by-name options first (listing the accepted ones), then every value against its
    Option. `fixed`: options the solver's name fixes (e.g. dpmpp2m's order and form) → what to use instead."""
    by_name = {o.name: o for o in schema}
    pinned = sorted(k for k in options if fixed and k in fixed and k not in by_name)
    if pinned:
        reasons = "; ".join(f"{k}: {fixed[k]}" for k in pinned)  # type: ignore[index]
        raise SolverError(f"solver {solver!r} takes no option(s) {', '.join(pinned)}, its name fixes them ({reasons}); "
                          f"drop {', '.join(pinned)}")
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
        by_name[name].check(value, owner=f"solver {solver!r}", error=SolverError)


# ---- options shared by several solvers -----------------------------------------------------------------------
SEED = Option("seed", "seed", None, "seeds the shared Brownian path (None: a fresh one); a list, one seed per "
              "sample, draws each sample's noise on the grid from its own generator", optional=True)
PATH = Option("bm", "path", None, "a Brownian path to read the noise from instead of seed=", optional=True)
TO_ZERO = Option("to_zero", "bool", False, "one more step from the grid's end to σ = 0 (x̂0 itself); its evaluation "
                 "counts in an NFE budget (the grid's steps get one evaluation fewer)")
GENERATOR = Option("generator", "generator", None, "draw z by torch.randn per step instead (as diffusers does)",
                   optional=True)
THRESHOLD = (
    Option("threshold", "float", None, "dynamic thresholding: the quantile ratio of |x̂0| clipped (Imagen: 0.995)",
           low=0.0, high=1.0, open_low=True, optional=True),
    Option("threshold_max", "float", 1.0, "the largest clip level s of dynamic thresholding", low=1.0),
)
FORM_DOC = "what the network output is integrated as: 'noise' (ε) or 'data' (x̂0)"
