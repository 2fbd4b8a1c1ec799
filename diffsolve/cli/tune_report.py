"""What `diffsolve tune` prints for each file it writes: a tuned grid's or a learned solver's errors and cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def report(tuned: Any, path: Path) -> None:
    """Two or three lines: errors, cost, and why tuning stopped early if it did."""
    held = "—" if tuned.heldout_error is None else f"{tuned.heldout_error:.4g}"
    held0 = "—" if tuned.start_heldout_error is None else f"{tuned.start_heldout_error:.4g}"
    val = "" if tuned.validation_error is None else f", validation {tuned.validation_error:.4g}"
    tails = "" if tuned.heldout_median is None else (f"; per-draw relative error median {tuned.heldout_median:.3g}, "
                                                     f"90th percentile {tuned.heldout_p90:.3g}")
    print(f"{tuned.solver} NFE {tuned.nfe} on {tuned.problem}: RMSE train {tuned.train_error:.4g} "
          f"(start {tuned.start}: {tuned.start_train_error:.4g}){val}, held-out {held} (start {held0}){tails}; "
          f"chosen: {tuned.chosen}{' (decoupled evaluation times)' if tuned.decoupled else ''}")
    shared = " (teacher and DP shared with the other NFEs)" if tuned.shared_cost else ""
    print(f"cost: {tuned.cost_nfe} model evaluations, {tuned.cost_samples:,} sample-evaluations forward and "
          f"{tuned.cost_vjp_samples:,} backward ({tuned.gradient} gradients), teacher {tuned.teacher.get('nfe')} "
          f"steps with error {tuned.teacher.get('error', float('nan')):.2g}{shared}; {tuned.cost_seconds:.1f} s wall, "
          f"{tuned.cost_cpu_seconds:.1f} s CPU; wrote {path} (use --grid file:{path})")
    if tuned.stopped:
        print(f"stopped early ({tuned.stopped}): the grid is the best found so far")


def _num(value: Any) -> str:
    """A number in 4 digits; a held-out error {rmse, median, p90} as its RMSE with the per-draw median and p90."""
    if isinstance(value, dict):
        return f"{_num(value.get('rmse'))} (per-draw median {_num(value.get('median'))}, p90 {_num(value.get('p90'))})"
    return "—" if value is None else f"{value:.4g}"


def report_learned(learned: Any, path: Path) -> None:
    """Two lines: the learned solver's errors beside the tuned grid's it started from, and the cost."""
    e, cost = learned.errors, learned.cost
    tuned = e.get("tuned") or {}
    decoupled = " (decoupled evaluation times)" if learned.grid.decoupled else ""
    print(f"{learned.solver.name} NFE {learned.nfe} on {learned.problem}: RMSE train {_num(e.get('train'))}, "
          f"validation {_num(e.get('validation'))}, held-out {_num(e.get('heldout'))}; the tuned grid it started "
          f"from ({tuned.get('stage')}): train {_num(tuned.get('train'))}, held-out {_num(tuned.get('heldout'))}; "
          f"chosen: {learned.chosen}{decoupled}")
    print(f"cost: {cost.get('nfe')} model evaluations, {cost.get('samples', 0):,} sample-evaluations forward and "
          f"{cost.get('vjp_samples', 0):,} backward; {cost.get('seconds', 0.0):.1f} s wall; wrote {path} (use "
          f"--solver file:{path})")
