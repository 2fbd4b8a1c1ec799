"""Benchmarks: error against NFE for solvers × grids × integration variables on benchmark problems.

`run(problem_or_model, solvers=…, grids=…, nfe=…)` does it all in one call and returns Results
(`.best_markdown()`, `.best(nfe)`, `.table()`, `.plot(path)`, `.write(out)`). Step by step:
`Suite.load("default")` or `expand_run({...})` make cells; `run_sweep(cells, "out/results.jsonl")`
runs the missing ones (resumable); `api.write_report` (best per NFE first: `best`; tables and plots: `report`)
summarises the records; `migrate` adopts results stored before cells carried fingerprints.
New cell kinds (e.g. stochastic solvers' strong/weak errors) plug in with `register_kind`.
"""

from . import metrics, report
from .api import Results, run
from .cells import CELL_KINDS, ode_cell, register_kind, run_cell, solve_cell
from .inputs import Inputs
from .store import ResultStore
from .suite import Cell, Suite, expand_run, parse_solver
from .sweep import run_sweep

__all__ = ["metrics", "report", "CELL_KINDS", "Inputs", "ode_cell", "register_kind", "run_cell", "solve_cell",
           "ResultStore", "Cell", "Suite", "expand_run", "parse_solver", "run_sweep", "Results", "run"]

from . import stochastic  # noqa: E402,F401  (registers the "sde" cell kind: strong and weak errors)
