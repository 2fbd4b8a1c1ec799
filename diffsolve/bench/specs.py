"""The bench's per-cell grid specs: `tuned` (a grid tuned for each cell) and `learned` (a solver learned for each
cell) — their parameters, defaults and the checks made when a suite is expanded, before any cell runs.

Both parse anywhere (diffsolve.grids.register_deferred) and are built by the bench alone (diffsolve.bench.tuned,
diffsolve.bench.learned); built elsewhere (`ds.sample(grid="learned")`) they are refused with what to do instead.
Keys: n (training draws), candidates (DP candidate times), max_evals (objective evaluations per refinement stage, 0:
the tuner's default), seed_offset (training seed = cell seed + offset), eval_times (1: decoupled evaluation times
where the solver takes them) and, for `learned`, conditions (1: each learned step consistent, 2: also the base
weights' first moment).
"""

from __future__ import annotations

from typing import Any

from .. import grids as grids_mod
from ..errors import SolverError
from ..solvers import get_solver
from ..solvers.exp.learned import CONDITIONS, learnable
from ..tuning.settings import DEFAULTS as TUNE_DEFAULTS

TUNED, LEARNED = "tuned", "learned"
_TRAINING = {"n": TUNE_DEFAULTS["n"], "candidates": TUNE_DEFAULTS["candidates"], "max_evals": 0, "seed_offset": 1000,
             "eval_times": 1}
DEFAULTS: dict[str, dict[str, int]] = {TUNED: _TRAINING, LEARNED: {**_TRAINING, "conditions": 1}}
grids_mod.register_deferred(TUNED, tuple(DEFAULTS[TUNED]), "is tuned per benchmark cell (diffsolve bench --grid "
                            "tuned); elsewhere tune one with `diffsolve tune … --out g.json` and pass 'file:g.json'")
grids_mod.register_deferred(LEARNED, tuple(DEFAULTS[LEARNED]), "is a solver learned per benchmark cell (diffsolve "
                            "bench --grid learned); elsewhere learn one with `diffsolve tune … --learn --out l.json` "
                            "(or ds.solvers.learn(…).save('l.json')) and pass solver='file:l.json' with no grid")


def settings(spec: grids_mod.GridSpec) -> dict[str, int]:
    """A per-cell spec's parameters over its DEFAULTS, as integers (checked)."""
    out = {**DEFAULTS[spec.name], **{k: int(v) for k, v in spec.params}}
    if out["n"] < 1 or out["candidates"] < 3 or out["max_evals"] < 0 or out["eval_times"] not in (0, 1) \
            or out.get("conditions", 1) not in CONDITIONS:
        extra = ", conditions 1 or 2" if spec.name == LEARNED else ""
        raise grids_mod.GridError(f"grid spec {spec.text!r}: n >= 1, candidates >= 3, max_evals >= 0, eval_times 0 "
                                  f"or 1{extra} expected; e.g. '{spec.name}:n=512'")
    return out


def check_specs(grids: list[grids_mod.GridSpec], solvers: list[tuple[str, dict[str, Any]]]) -> None:
    """Before any cell runs: every per-cell spec's parameters, and, for `learned`, that every fixed-step solver of
    the run can be learned (an adaptive one gets its own cells, on no grid)."""
    for spec in grids:
        if spec.name not in DEFAULTS:
            continue
        settings(spec)
        if spec.name != LEARNED:
            continue
        for name, _ in solvers:
            if get_solver(name).adaptive:
                continue
            try:
                learnable(name)
            except SolverError as e:
                raise SolverError(f"grid {spec.text!r} learns each cell's solver, but {e}; or drop {name!r} from "
                                  f"this run, or give it in a run without the '{LEARNED}' grid") from None
