"""One call from Python: `diffsolve.bench.run(problem_or_model, solvers=…, grids=…, nfe=…)` → Results.

    res = ds.bench.run(model, shape=(2,), solvers=["heun", "dpmpp2m"], nfe=[5, 10, 20])
    res.table()           # pandas DataFrame when pandas is installed, else a list of dicts
    res.plot("err.png")   # error vs NFE, a panel per solver family
    res.best(10)          # the most accurate solver / grid / variable within 10 NFE

The problem is anything `diffsolve.problems.resolve` takes: a name, "pkg.mod:attr", "file.py:attr", a
checkpoint path, a Problem or a diffsolve Model (with shape=…). With out=None nothing is written; with a
folder the records go to OUT/results.jsonl and a rerun skips the cells already there (keyed by the
problem's fingerprint, so changed weights recompute).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from .inputs import Inputs
from .report import legend, markdown, plot, series
from .store import ResultStore, json_safe
from .suite import Suite
from .sweep import run_sweep

Record = dict[str, Any]


class MemoryStore(ResultStore):
    """A result store that keeps records in memory only (out=None)."""

    def __init__(self) -> None:
        self.path = None  # type: ignore[assignment]
        self.records: dict[str, Record] = {}

    def refresh(self) -> None:
        """Nothing to read: no other process writes here."""

    def claim(self, key: str, *, wait: bool = False) -> AbstractContextManager[bool]:
        return nullcontext(True)

    def append(self, record: Record) -> Record:
        rec = json_safe(record)
        self.records[rec["key"]] = rec
        return rec


class Results:
    """The records of one benchmark run, with a table, a plot and the best configuration per budget."""

    def __init__(self, records: list[Record], suite: Suite, inputs: Inputs):
        self.records, self.suite, self.references = records, suite, inputs.references

    @property
    def failed(self) -> list[Record]:
        """Records of cells that raised (their 'error' says why)."""
        return [r for r in self.records if r.get("status") != "ok"]

    def rows(self, metric: str = "rmse") -> list[dict[str, Any]]:
        """One row per solver / grid / variable: the metric at each NFE target (seed means) and the fitted order."""
        out = []
        for s in series(self.records):
            row: dict[str, Any] = {"problem": s.problem, "solver": s.solver, "grid": s.grid, "variable": s.variable}
            for target, p in sorted(s.points.items()):
                row[f"{'tol' if s.grid == 'adaptive' else 'nfe'}={target:g}"] = p.get(metric)
            if metric == "rmse" and s.grid != "adaptive":
                row["order"] = s.order(self.suite.fit_last, self.suite.fit_min_nfe)[0]
            out.append(row)
        return out

    def table(self, metric: str = "rmse") -> Any:
        """`rows(metric)` as a pandas DataFrame when pandas is installed, else the list of dicts."""
        try:
            import pandas as pd
        except ImportError:
            return self.rows(metric)
        return pd.DataFrame(self.rows(metric))

    def markdown(self, metric: str = "rmse") -> str:
        """The CLI's markdown table (reference error, SW2 floor, fitted orders) and its legend."""
        return markdown(self.records, metric=metric, fit_last=self.suite.fit_last,
                        fit_min_nfe=self.suite.fit_min_nfe) + "\n" + legend()

    def plot(self, path: str | Path, metric: str = "rmse") -> Path:
        """Write the error-vs-NFE figure; returns its path."""
        if not plot(self.records, path, metric=metric):
            raise ValueError(f"no cell has a {metric} value to plot ({len(self.failed)} failed)")
        return Path(path)

    def best(self, nfe: int, metric: str = "rmse") -> dict[str, Any] | None:
        """The solver / grid / variable with the lowest metric among points that spent at most `nfe` evaluations
        (counted, seed means), or None when none did."""
        found: dict[str, Any] | None = None
        for s in series(self.records):
            for p in s.points.values():
                value = p.get(metric)
                if value is not None and p["nfe"] <= nfe and (found is None or value < found[metric]):
                    found = {"solver": s.solver, "grid": s.grid, "variable": s.variable, "nfe": p["nfe"], metric: value}
        return found

    def __repr__(self) -> str:
        return f"<bench results: {len(self.records)} cells, {len(self.failed)} failed>\n{self.markdown()}"


def run(
    problem: Any,
    *,
    solvers: Sequence[str | dict[str, Any]] = ("euler", "heun", "dpmpp2m", "unipc"),
    grids: Sequence[str] = ("logsnr",),
    nfe: Sequence[int] = (5, 10, 20, 50),
    variables: Sequence[str] = ("sigma",),
    seeds: Sequence[int] = (0,),
    out: str | Path | None = None,
    shape: Sequence[int] | None = None,
    fingerprint: str | None = None,
    threads: int | None = 1,
    progress: bool = True,
    **settings: Any,
) -> Results:
    """Benchmark solvers × grids × variables × NFE on one problem (or Model); `variables` applies to the solvers that
    take any variable (σ̄ by default, as in `ds.sample`); the others run in their own. `settings` are other suite keys
    (n, schedule, ref_tol, tols, dtype, repeats, …). threads sets torch's intra-op threads for the run
    (restored afterwards; None leaves them)."""
    run_dict: dict[str, Any] = {"problems": [problem], "solvers": list(solvers), "grids": list(grids),
                                "nfe": list(nfe), "variables": list(variables), "seeds": list(seeds), **settings}
    if shape is not None:
        run_dict["shape"] = list(shape)
    if fingerprint is not None:
        run_dict["fingerprint"] = fingerprint
    suite = Suite.from_dict(run_dict, name="run")
    store: ResultStore = MemoryStore() if out is None else ResultStore(Path(out) / "results.jsonl")
    inputs = Inputs(cache_dir=None if out is None else Path(out) / "cache", progress=progress)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        records = run_sweep(suite.cells, store, progress=progress, inputs=inputs)
    finally:
        torch.set_num_threads(before)
    return Results(records, suite, inputs)
