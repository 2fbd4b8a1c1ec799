"""One call from Python: `diffsolve.bench.run(problem_or_model, solvers=…, grids=…, nfe=…)` → Results.

    res = ds.bench.run(model, shape=(2,), solvers=["heun", "dpmpp2m"], nfe=[5, 10, 20])
    res.table()           # pandas DataFrame when pandas is installed, else a list of dicts
    res.plot("err.png")   # error vs NFE, a panel per solver family
    res.best(10)          # the most accurate solver / grid / variable within 10 NFE
    res.best_markdown()   # the best-per-NFE table: at each budget the best, its median/p90/flips, × the baseline
    res.best_rows()       # the same as a list of dicts (the "best" rows of --format json)
    res.markdown()        # the report's tables, as table.md holds them (best per NFE first); res.write("out")

The problem is anything `diffsolve.problems.resolve` takes: a name, "pkg.mod:attr", "file.py:attr", a
checkpoint path, a Problem or a diffsolve Model (with shape=…). With out=None nothing is written; with a
folder the records go to OUT/results.jsonl and a rerun skips the cells already there (keyed by the
problem's fingerprint, so changed weights recompute), and the report (`write_report`) is written there.
Under torchrun the ranks split the cells and rank 0 merges and reports (diffsolve.bench.ranks), as
`diffsolve bench` does: `run_suite` is what the command line runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..checks import Option
from ..distributed import Rank
from ..errors import DiffsolveError
from ..threads import checked_threads
from ..userpaths import make_folder
from . import best as best_mod
from . import report
from .inputs import Inputs
from .ranks import sweep_into
from .store import MemoryStore
from .suite import Suite
from .sweep import run_sweep

Record = dict[str, Any]
REPORT_FILES = ("results.csv", "table.md", "best_vs_nfe.png", "rmse_vs_nfe.png", "sw2_vs_nfe.png",
                "ode_vs_sde_sw2.png", "strong_vs_nfe.png", *(f"{m}_vs_nfe.png" for m in report.DATA_METRICS))
FORMATS = ("md", "csv", "json")


def _metrics(records: list[Record]) -> list[str]:
    """The metrics the report shows: RMSE, SW2 when any cell has it, then each data metric any cell has."""
    return ["rmse"] + [m for m in ("sw2", *report.DATA_METRICS) if any(r.get(m) is not None for r in records)]


def report_markdown(records: list[Record], *, fit_last: int | None = 3, fit_min_nfe: float | None = None) -> str:
    """The report's tables, as table.md holds them: the best configuration per NFE first (diffsolve.bench.best), the
    strong/weak error tables when there are SDE cells, one table per metric (error against NFE per solver / grid /
    variable, fitted orders, reference error; the data metrics under "Quality against the data", each with its
    floor), the legends."""
    from .stochastic import strong_weak_markdown

    metrics = _metrics(records)
    own = [report.markdown(records, metric=m, fit_last=fit_last, fit_min_nfe=fit_min_nfe) for m in metrics
           if m not in report.DATA_METRICS]
    data = [report.markdown(records, metric=m) for m in metrics if m in report.DATA_METRICS]
    parts = [best_mod.best_markdown(records)]
    if any(r.get("kind") == "sde" for r in records):
        parts.append(strong_weak_markdown(records, fit_last))
    parts += own
    if data:
        parts += ["### Quality against the data\n\n" + report.DATA_NOTE + "\n", *data]
    return "\n".join(parts) + "\n" + best_mod.BEST_LEGEND + "\n\n" + report.legend() + "\n"


def report_csv(records: list[Record]) -> str:
    """One CSV row per cell record (the columns of report.CSV_FIELDS)."""
    return report.csv_text(records)


def report_json(records: list[Record]) -> str:
    """One JSON object per cell record per line, then one per best-per-NFE row (kind "best", `best.best_records`)."""
    return "".join(json.dumps(r, allow_nan=False) + "\n" for r in [*records, *best_mod.best_records(records)])


def write_report(records: list[Record], out: str | Path, *, fit_last: int | None = 3,
                 fit_min_nfe: float | None = None) -> list[Path]:
    """The report of a run in OUT: results.csv, table.md (`report_markdown`), the overview best_vs_nfe.png (each
    family's Pareto front), the error-vs-NFE plots per metric and, with SDE cells, the ODE-vs-SDE SW2 plot and the
    strong-error plot (OUT is created if missing). Returns the paths written."""
    from .stochastic import plot_ode_vs_sde

    out = make_folder(out, "the report folder")
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        f.write(report_csv(records))
    (out / "table.md").write_text(report_markdown(records, fit_last=fit_last, fit_min_nfe=fit_min_nfe),
                                  encoding="utf-8")
    written = [out / "results.csv", out / "table.md"]
    written += [out / "best_vs_nfe.png"] if best_mod.plot_best(records, out / "best_vs_nfe.png") else []
    written += [out / f"{m}_vs_nfe.png" for m in _metrics(records)
                if report.plot(records, out / f"{m}_vs_nfe.png", metric=m)]
    sde = [r for r in records if r.get("kind") == "sde"]
    if sde:  # strong and weak errors, ODE vs SDE at equal NFE
        plot_ode_vs_sde(records, out / "ode_vs_sde_sw2.png")
        written.append(out / "ode_vs_sde_sw2.png")
        if report.plot(sde, out / "strong_vs_nfe.png", metric="rmse"):
            written.append(out / "strong_vs_nfe.png")
    return written


class Results:
    """The records of one benchmark run (in its cells' order), with its report, a table, a plot and the best
    configuration per budget. `complete` is False on a rank that holds only its own cells; `interrupted` is the
    Ctrl-C / SIGTERM that stopped the run (its finished cells are here)."""

    def __init__(self, records: list[Record], suite: Suite, references: Sequence[dict[str, Any]] = (), *,
                 complete: bool = True, interrupted: KeyboardInterrupt | None = None, rank: Rank | None = None):
        self.records, self.suite, self.references = records, suite, list(references)
        self.complete, self.interrupted, self.rank = complete, interrupted, rank or Rank()

    @property
    def failed(self) -> list[Record]:
        """Records of cells that raised (their 'error' says why)."""
        return [r for r in self.records if r.get("status") != "ok"]

    def rows(self, metric: str = "rmse") -> list[dict[str, Any]]:
        """One row per solver / grid / variable: the metric at each NFE target (seed means) and the fitted order."""
        out = []
        for s in report.series(self.records):
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

    def markdown(self) -> str:
        """The report's tables as table.md holds them (`report_markdown`)."""
        return report_markdown(self.records, fit_last=self.suite.fit_last, fit_min_nfe=self.suite.fit_min_nfe)

    def csv(self) -> str:
        """The records as CSV, as results.csv holds them."""
        return report_csv(self.records)

    def json_lines(self) -> str:
        """One JSON object per record per line (as results.jsonl holds them), then one per best-per-NFE row (kind
        "best")."""
        return report_json(self.records)

    def format(self, fmt: str) -> str:
        """The report in one of FORMATS: 'md' (the tables, best per NFE first), 'csv' (one row per cell) or 'json'
        (`json_lines`)."""
        return {"md": self.markdown, "csv": self.csv, "json": self.json_lines}[fmt]()

    def best_markdown(self) -> str:
        """The best-per-NFE table(s) alone, as table.md starts (diffsolve.bench.best)."""
        return best_mod.best_markdown(self.records)

    def best_rows(self) -> list[dict[str, Any]]:
        """The best-per-NFE table (diffsolve.bench.best): per problem, schedule and budget the most accurate
        configuration, its RMSE, median, p90 and flips, its ratio to the baseline's RMSE and the reference error."""
        return best_mod.best_records(self.records)

    def write(self, out: str | Path) -> list[Path]:
        """Write the report into the folder OUT (`write_report`); returns the paths written."""
        return write_report(self.records, out, fit_last=self.suite.fit_last, fit_min_nfe=self.suite.fit_min_nfe)

    def plot(self, path: str | Path, metric: str = "rmse") -> Path:
        """Write the error-vs-NFE figure; returns its path."""
        if not report.plot(self.records, path, metric=metric):
            raise ValueError(f"no cell has a {metric} value to plot ({len(self.failed)} failed)")
        return Path(path)

    def best(self, nfe: int, metric: str = "rmse") -> dict[str, Any] | None:
        """The solver / grid / variable with the lowest metric among points that spent at most `nfe` evaluations
        (counted, seed means), or None when none did."""
        nfe = Option("nfe", "int", None, "the NFE budget", low=1).check(nfe, fix="pass the budget, e.g. best(10)")
        metric = Option("metric", "choice", "rmse", choices=report.POINT_FIELDS).check(metric)
        found: dict[str, Any] | None = None
        for s in report.series(self.records):
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
    report: bool = True,
    **settings: Any,
) -> Results:
    """Benchmark solvers × grids × variables × NFE on one problem (or Model); `variables` applies to the solvers that
    take any variable (σ̄ by default, as in `ds.sample`); the others run in their own. `settings` are other suite keys
    (n, schedule, ref_tol, tols, dtype, repeats, …). threads sets torch's intra-op threads for the run
    (restored afterwards; None leaves them). With `out`, the run resumes from OUT/results.jsonl and (with `report`)
    writes the report there; under torchrun the ranks split the cells and rank 0 merges and reports."""
    run_dict: dict[str, Any] = {"problems": [problem], "solvers": _listed(solvers, "solvers"),
                                "grids": _listed(grids, "grids"), "nfe": _listed(nfe, "nfe"),
                                "variables": _listed(variables, "variables"), "seeds": _listed(seeds, "seeds"),
                                **settings}
    if shape is not None:
        run_dict["shape"] = list(shape)
    if fingerprint is not None:
        run_dict["fingerprint"] = fingerprint
    res = run_suite(Suite.from_dict(run_dict, name="run"), out, threads=threads, progress=progress, report=report)
    if res.interrupted is not None:
        raise res.interrupted
    return res


def _listed(values: Any, name: str) -> list[Any]:
    """A list of the values (a lone string or number is refused: solvers="euler" is not ["e", "u", …])."""
    if isinstance(values, (str, bytes, int, float, dict)) or not isinstance(values, Sequence):
        raise DiffsolveError(f"{name} must be a list, e.g. {name}=[{values!r}], got {values!r}")
    return list(values)


def run_suite(suite: Suite, out: str | Path | None = None, *, shard: str | None = None, fresh: bool = False,
              repair: bool = False, retry_failed: bool = False, threads: int | None = 1, progress: bool = True,
              report: bool = True, on_record: Callable[[Record, bool], None] | None = None,
              log: Callable[[str], None] | None = None) -> Results:
    """Run a suite's cells: in memory (out=None), or into the folder OUT by the multi-rank protocol
    (diffsolve.bench.ranks: torchrun's ranks or shard="i/n" split the cells, rank 0 merges); with `report` the
    process that holds the whole suite writes the report into OUT (unless every cell failed). An interrupt is
    returned in Results.interrupted with the finished cells. This is what `diffsolve bench` runs."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(checked_threads(threads))
    try:
        if out is None:
            inputs = Inputs(progress=progress)
            records = run_sweep(suite.cells, MemoryStore(), progress=progress, retry_failed=retry_failed,
                                on_record=on_record, inputs=inputs)
            return Results(records, suite, inputs.references)
        done = sweep_into(suite.cells, out, shard=shard, fresh=fresh, repair=repair, retry_failed=retry_failed,
                          progress=progress, on_record=on_record, log=log, clear=REPORT_FILES,
                          title=f"suite {suite.name!r}")
    finally:
        torch.set_num_threads(before)
    res = Results(done.records, suite, done.references, complete=done.complete, interrupted=done.interrupted,
                  rank=done.rank)
    if report and res.complete and res.interrupted is None and len(res.failed) < len(res.records):
        res.write(out)
    return res
