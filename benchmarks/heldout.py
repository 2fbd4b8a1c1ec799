"""Held-out errors of solver configurations, shared by tuned_grids, peers_accuracy and lower_order_final.

The relative error ‖x − ref‖/‖ref‖ of a solver configuration on a grid at an NFE budget, from held-out draws of x_T,
against the float64 reference; configurations are written 'solver:key=value:…'.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

import diffsolve as ds
from diffsolve.bench import parse_solver
from diffsolve.bench.metrics import rel_err
from diffsolve.plan import plan
from diffsolve.schedules import F64

# every choice the solvers' automatic defaults would make is pinned, so that the committed results rerun as they were
STANDARD = ("dpmpp2m:lower_order_final=1", "dpmpp3m:lower_order_final=1:variant=taylor", "unipc:lower_order_final=1",
            "unipc:lower_order_final=0", "deis:lower_order_final=1", "ipndm:order=2", "ipndm:order=3", "ipndm",
            "ipndm_v:order=3", "ipndm_v:order=2")
TUNED = ("ipndm:order=3", "unipc:lower_order_final=1")


def config(text: str) -> tuple[str, dict[str, Any]]:
    """'solver:key=value:…' → (solver, options), read as the bench reads --solver (diffsolve.bench.parse_solver)."""
    return parse_solver(text)


def label(solver: str, opts: dict[str, Any]) -> str:
    """(solver, options) → 'solver:key=value:…' with the keys sorted."""
    return solver + "".join(f":{k}={v}" for k, v in sorted(opts.items()))


def solve_heldout(model: Any, x: torch.Tensor, solver: str, opts: dict[str, Any], grid: Any, nfe: int) -> torch.Tensor:
    """`solver` on `grid` (a spec or a Grid) at `nfe` from the held-out x_T, float64 (diffsolve.plan's cell)."""
    cell = plan(model, solver, nfe=nfe, grid=grid, options=opts)
    return ds.solve(cell.dynamics, x, cell.grid, cell.solver, **cell.options).x.to(F64)


def heldout_error(model: Any, x: torch.Tensor, ref: torch.Tensor, solver: str, opts: dict[str, Any], grid: Any,
                  nfe: int) -> float:
    """Relative error ‖x − ref‖/‖ref‖ of `solver` on `grid` at `nfe` from the held-out x_T."""
    return rel_err(solve_heldout(model, x, solver, opts, grid, nfe), ref)


def nfe_list(text: str) -> list[int]:
    """'4,5,6' → [4, 5, 6]."""
    return [int(v) for v in text.split(",")]


def common_arguments(p: argparse.ArgumentParser) -> None:
    """The options tuned_grids and peers_accuracy share: problem, NFE, configurations, draws, seeds, tuning."""
    p.add_argument("--problem", default="gmm-64")
    p.add_argument("--nfe", type=nfe_list, default=[4, 5, 6, 8, 10, 15, 20])
    p.add_argument("--standard", type=lambda s: s.split(","), default=list(STANDARD))
    p.add_argument("--tuned", type=lambda s: s.split(","), default=list(TUNED))
    p.add_argument("--n-eval", type=int, default=256)
    p.add_argument("--n-train", type=int, default=1024)
    p.add_argument("--train-seed", type=int, default=10)
    p.add_argument("--heldout-seed", type=int, default=0)
    p.add_argument("--candidates", type=int, default=64, help="DP candidates of the tuner")
    p.add_argument("--teacher-tol", type=float, default=None,
                   help="the RMSE the tuner's teacher must reach (default: 0.1× the training error reached)")
    p.add_argument("--max-evals", type=int, default=None,
                   help="refinement budget in objective evaluations per stage (default: the tuner's)")

