"""The answer first: at each NFE budget, the most accurate configuration of a run, beside a classic baseline and the
reference's own error.

Per problem, schedule and cell kind, for each budget B among the fixed-step cells' NFE targets: the configuration
(solver / grid / variable, or an adaptive solver at one tolerance) with the lowest RMSE among the points that spent
at most B evaluations (counted, seed means); its median and 90th percentile of the per-sample error and its mode
flips where the records have them (a heavy tail shows as an RMSE far above the median, and as flips); the ratio of
its RMSE to the baseline's at the same budget, where the baseline is the first of BASELINES in the run (the classic
choice, DPM-Solver++(2M) on the logSNR grid); and the reference error (below about 10× it, errors are not resolved).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .report import MARKERS, YLABEL, Record, Series, budgets, family, floor_line, fmt, nfe_axis, nfe_range, series

# (solver label, grid or None for any, variable or None for any): the classic choices, most wanted first
BASELINES: tuple[tuple[str, str | None, str | None], ...] = (
    ("dpmpp2m", "logsnr", None), ("dpmpp2m", None, None), ("ddim", "logsnr", None), ("euler", "logsnr", "sigma"),
    ("ddim", None, None), ("euler", None, "sigma"))
BASELINE_NAMES = {"dpmpp2m": "DPM-Solver++(2M)", "ddim": "DDIM", "euler": "Euler in σ̄ (= DDIM)"}
RESOLVED = 10.0  # an error below RESOLVED × the reference error is not resolved by the reference


@dataclass(frozen=True)
class Pick:
    """One configuration at one point: the series and its values there (a `Series.points` entry)."""

    series: Series
    point: dict[str, Any]
    target: float

    @property
    def label(self) -> str:
        s = self.series
        return s.label + (f" (tol {self.target:g})" if s.grid == "adaptive" else "")


@dataclass(frozen=True)
class BestRow:
    """The best configuration at one budget, the baseline's point at that budget (or None) and the reference error."""

    budget: int
    best: Pick
    baseline: Pick | None

    @property
    def ratio(self) -> float | None:
        """best RMSE / baseline RMSE at this budget."""
        if self.baseline is None or not self.baseline.point.get("rmse"):
            return None
        return self.best.point["rmse"] / self.baseline.point["rmse"]


@dataclass(frozen=True)
class BestTable:
    """The best-per-NFE rows of one problem, schedule and cell kind, and the baseline series they are compared with."""

    problem: str
    schedule: str
    kind: str
    rows: list[BestRow]
    baseline: Series | None


def baseline_of(group: list[Series]) -> Series | None:
    """The first of BASELINES present among the fixed-step series (default options), else None."""
    for solver, grid, variable in BASELINES:
        for s in group:
            if (s.grid != "adaptive" and s.solver == solver and grid in (None, s.grid)
                    and variable in (None, s.variable)):
                return s
    return None


def _best_within(group: list[Series], budget: int) -> Pick | None:
    """The point with the lowest RMSE among those that spent at most `budget` evaluations (first one on ties)."""
    found: Pick | None = None
    for s in group:
        for target, p in s.points.items():
            if p.get("rmse") is not None and p["nfe"] <= budget and (found is None or p["rmse"] < found.point["rmse"]):
                found = Pick(s, p, target)
    return found


def best_tables(records: list[Record]) -> list[BestTable]:
    """One BestTable per problem, schedule and cell kind of the records (in their order of appearance)."""
    groups: dict[tuple[str, str, str], list[Series]] = defaultdict(list)
    for s in series(records):
        groups[(s.problem, s.schedule, s.kind)].append(s)
    out = []
    for (prob, sched, kind), group in groups.items():
        base = baseline_of(group)
        budgets = sorted({int(t) for s in group if s.grid != "adaptive" for t in s.points})
        rows = []
        for b in budgets:
            pick = _best_within(group, b)
            if pick is not None:
                base_point = None if base is None else base.points.get(b)
                rows.append(BestRow(b, pick, None if base_point is None or base_point.get("rmse") is None
                                    else Pick(base, base_point, b)))
        if rows:
            out.append(BestTable(prob, sched, kind, rows, base))
    return out


def best_records(records: list[Record]) -> list[Record]:
    """The best-per-NFE rows as flat JSON objects with kind "best" (what `--format json` prints after the cells)."""
    out = []
    for table in best_tables(records):
        for row in table.rows:
            s, p = row.best.series, row.best.point
            base = row.baseline
            out.append({"kind": "best", "problem": table.problem, "schedule": table.schedule, "cell_kind": table.kind,
                        "nfe_budget": row.budget, "solver": s.solver, "grid": s.grid, "variable": s.variable,
                        "tol": row.best.target if s.grid == "adaptive" else None, "nfe": p["nfe"],
                        **{k: p.get(k) for k in ("rmse", "err_median", "err_p90", "flips", "ref_err")},
                        "n": None if p.get("n") is None else round(p["n"]),
                        "baseline": None if base is None else base.label,
                        "baseline_rmse": None if base is None else base.point["rmse"], "vs_baseline": row.ratio})
    return out


def _baseline_text(table: BestTable) -> str:
    if table.baseline is None:
        return ("no classic baseline in this run (add the solver dpmpp2m, DPM-Solver++(2M), on the logsnr grid to "
                "compare with it)")
    b = table.baseline
    name = BASELINE_NAMES.get(b.solver, b.solver)
    usual = b.solver == "dpmpp2m" and b.grid == "logsnr"
    return f"× baseline: the RMSE over that of {name}, `{b.label}`" + ("" if usual else (
        " (DPM-Solver++(2M) on the logSNR grid, the usual classic choice, is not in this run)"))


def _flips(p: dict[str, Any]) -> str:
    f, n = p.get("flips"), p.get("n")
    if f is None:
        return "—"
    shown = f"{f:.0f}" if float(f).is_integer() else f"{f:.1f}"
    return shown + (f"/{n:.0f}" if n else "")


def best_markdown(records: list[Record]) -> str:
    """The best-per-NFE tables (module doc), one per problem / schedule / cell kind; "" when no cell succeeded."""
    lines: list[str] = []
    for table in best_tables(records):
        pts = [r.best.point for r in table.rows]
        extra = [(k, h) for k, h in (("err_median", "median"), ("err_p90", "p90")) if any(p.get(k) is not None
                                                                                              for p in pts)]
        flips = any(p.get("flips") is not None for p in pts)
        what = "strong error (RMS against a fine solution on the same Brownian path)" if table.kind == "sde" else "RMSE"
        lines += [f"**Best per NFE** on `{table.problem}` (schedule `{table.schedule}`"
                  + ("" if table.kind == "ode" else f", {table.kind} cells") + f"): the lowest {what} within each "
                  f"budget; {_baseline_text(table)}", ""]
        head = (["NFE", "best solver / grid / variable", "RMSE"] + [h for _, h in extra] + (["flips"] if flips else [])
                + ["× baseline", "reference error"])
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in table.rows:
            p = row.best.point
            cells = [str(row.budget), row.best.label + ("" if p["nfe"] == row.budget else f" ({p['nfe']})"),
                     fmt(p["rmse"]) + (" †" if _unresolved(p) else "")]
            cells += [fmt(p.get(k)) for k, _ in extra] + ([_flips(p)] if flips else [])
            cells += ["—" if row.ratio is None else f"{row.ratio:.2g}", fmt(p.get("ref_err"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _unresolved(p: dict[str, Any]) -> bool:
    ref = p.get("ref_err")
    return ref is not None and p["rmse"] < RESOLVED * ref


BEST_LEGEND = """\
Best per NFE: within each budget, the configuration with the lowest RMSE (seed means) among those that spent at
most that many network evaluations; "(N)" after it: it spent N. median and p90: the median and 90th percentile over
samples of each sample's RMSE per dimension (an RMSE far above the median means a few samples carry the error);
flips: samples that end in another mixture component than their reference (problems with known modes). "×
baseline": its RMSE over the baseline's at the same budget (below 1: better). "†": below 10× the reference error,
so not resolved by the reference."""


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated (NFE, error) points, by increasing NFE: each has a lower error than every one with fewer or
    as many evaluations."""
    front: list[tuple[float, float]] = []
    for nfe, err in sorted(points):  # at equal NFE the lowest error comes first
        if not front or err < front[-1][1]:
            front.append((nfe, err))
    return front


def plot_best(records: list[Record], path: str | Path) -> bool:
    """The overview: one panel per problem / schedule / cell kind with, for each solver family, the Pareto front of RMSE
    against counted NFE over its configurations, the front of all of them in black, and the reference error as a grey
    floor line; integer NFE ticks. False when nothing to draw."""
    groups: dict[tuple[str, str, str], list[Series]] = defaultdict(list)
    for s in series(records):
        if s.curve("rmse")[0]:
            groups[(s.problem, s.schedule, s.kind)].append(s)
    if not groups:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(7.5 * len(groups), 5.5), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, ((prob, sched, kind), group) in zip(axes.flat, groups.items()):
        by_family: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for s in group:
            by_family[family(s.solver)] += list(zip(*s.curve("rmse")))
        for i, (fam, pts) in enumerate(by_family.items()):
            front = pareto(pts)
            n_conf = sum(family(s.solver) == fam for s in group)
            ax.loglog(*zip(*front), marker=MARKERS[i % len(MARKERS)], color=cmap(i % 10), markersize=5,
                      label=f"{fam} (best of {n_conf})")
        everything = pareto([p for pts in by_family.values() for p in pts])
        ax.loglog(*zip(*everything), color="black", linewidth=2.5, alpha=0.35, label="best overall (the table)")
        floor_line(ax, group, "rmse")
        nfe_axis(ax, budgets(group), nfe_range(group, "rmse"))
        ax.set_xlabel("NFE (counted)")
        ax.set_ylabel(YLABEL["rmse"] if kind == "ode" else "strong error (same Brownian path)")
        ax.set_title(f"{prob} ({sched})" + ("" if kind == "ode" else f", {kind}"))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("the most accurate configuration of each solver family at each NFE")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
