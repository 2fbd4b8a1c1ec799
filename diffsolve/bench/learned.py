"""The bench's `learned` grid spec: each cell learns its solver on training draws and is measured on its own.

`learned` (keys n, candidates, max_evals, seed_offset, eval_times, conditions: `learned:n=512`,
`learned:conditions=2`; diffsolve.bench.specs) learns, with diffsolve.tuning.learn (ds.solvers.learn), a solver for
the cell's solver, options, NFE, variable and schedule on the training seed `cell.seed + seed_offset` (default 1000)
with n draws, as the `tuned` spec tunes a grid (diffsolve.bench.tuned: the same key and arguments); the cell then
runs that learned solver on its own grid, on the cell's own draws (seed `cell.seed`), measured as every other cell.
Learned solvers are kept in `cache_dir/learned-<hash>.json` (LearnedSolver files; Inputs.trained) so that a rerun
does not learn again; a solver without learnable weights is refused when the suite is expanded (specs.check_specs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import grids as grids_mod
from ..solvers import get_solver
from ..solvers.learned import LearnedSolver
from .specs import LEARNED, settings
from .tuned import training_args, training_key

if TYPE_CHECKING:
    from .inputs import Inputs
    from .suite import Cell


def learned_solver(cell: Cell, inputs: Inputs, spec: grids_mod.GridSpec) -> LearnedSolver:
    """The cell's learned solver: learned now, or read back from the cache dir (schedule and fingerprint checked)."""
    from ..tuning import learn

    opts, prob = settings(spec), inputs.problem(cell)
    args = {**training_args(cell, inputs, opts), "conditions": opts["conditions"]}
    return inputs.trained(
        LEARNED, training_key(cell, inputs, opts, "learner-1"),
        lambda: learn(prob, get_solver(cell.solver).name, cell.nfe, **args),  # type: ignore[return-value]
        lambda path: LearnedSolver.load(path, inputs.schedule(cell), prob.fingerprint()))


def learning_cost(learned: LearnedSolver) -> dict[str, Any]:
    """The learning's cost fields for the record, under the tuning's names (tuned.COST_FIELDS: a learned solver is
    a tuned grid and weights): model calls, wall and CPU seconds (grid stages included), the training error of the
    chosen solver, the grid the tuning started from, and what validation chose ("weights" or a grid stage)."""
    return {"tune_nfe": int(learned.cost.get("nfe", 0)), "tune_seconds": learned.cost.get("seconds"),
            "tune_cpu_seconds": learned.cost.get("cpu_seconds"), "tune_train_error": learned.errors.get("train"),
            "tune_start": (learned.errors.get("start") or {}).get("grid"), "tune_chosen": learned.chosen}
