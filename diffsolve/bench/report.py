"""Reports from cell records: series (one line of error vs NFE), fitted orders, CSV, markdown, plot."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import DATA_FIELDS
from .metrics import fitted_order

Record = dict[str, Any]
CSV_FIELDS = ("problem", "schedule", "solver", "label", "options_label", "grid", "variable", "kind", "dtype", "n",
              "seed", "nfe_target", "nfe", "steps", "status", "rmse", "rel_err", "max_err", "err_median", "err_p90",
              "flips", "sw2", "sw2_floor", "ref_err", "seconds", "fingerprint", "error", "tune_nfe", "tune_seconds",
              "tune_cpu_seconds", *DATA_FIELDS)
VARIABLE_LABEL = {"t": "t", "sigma": "σ̄", "lambda": "λ"}
POINT_FIELDS = ("rmse", "rel_err", "max_err", "err_median", "err_p90", "flips", "n", "sw2", "sw2_floor", "ref_err",
                "seconds", *DATA_FIELDS)  # the values a Series point holds: means over seeds
METRIC_TITLE = {"sw2": "sliced W2 to exact samples"}  # what a metric's table heading says after its name
DATA_METRICS = {"data_sw2": "sliced W2 to the data", "data_mmd2": "unbiased MMD² to the data; may be < 0",
                "data_fd": "Fréchet distance to the data in the feature space"}
METRIC_TITLE.update(DATA_METRICS)


@dataclass
class Series:
    """One solver × grid × variable on one problem: errors against NFE, averaged over seeds."""

    problem: str
    schedule: str
    solver: str
    grid: str
    variable: str
    kind: str
    points: dict[float, dict[str, Any]] = field(default_factory=dict)  # target → values averaged over seeds

    @property
    def label(self) -> str:
        return f"{self.solver} / {self.grid} / {VARIABLE_LABEL.get(self.variable, self.variable)}"

    def curve(self, metric: str = "rmse") -> tuple[list[int], list[float]]:
        """(counted NFE, metric) over the finished points, by increasing NFE."""
        pts = sorted((p["nfe"], p[metric]) for p in self.points.values() if p.get(metric) is not None)
        return [n for n, _ in pts], [e for _, e in pts]

    def order(self, last: int | None = 3, min_nfe: float | None = None) -> tuple[float | None, list[float]]:
        """Fitted order of RMSE vs counted NFE, above 10× the reference's own accuracy."""
        nfe, err = self.curve("rmse")
        ref = [p["ref_err"] for p in self.points.values() if p.get("ref_err") is not None]
        return fitted_order(nfe, err, last=last, min_nfe=min_nfe, floor=10 * max(ref, default=0.0))


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def series(records: list[Record]) -> list[Series]:
    """Group 'ok' records into series; values at one target (NFE, or tolerance) are averaged over seeds."""
    groups: dict[tuple[str, ...], dict[float, list[Record]]] = defaultdict(lambda: defaultdict(list))
    order: list[tuple[str, ...]] = []
    for r in records:
        k = (r["problem"], r["schedule"], _solver_label(r), r["grid"], r["variable"], r["kind"])
        if k not in groups:
            order.append(k)
            groups[k] = defaultdict(list)
        if r.get("status") == "ok":
            groups[k][_target(r)].append(r)
    out = []
    for k in order:
        s = Series(*k)
        for target, recs in groups[k].items():
            s.points[target] = {m: _mean([r.get(m) for r in recs]) for m in POINT_FIELDS}
            s.points[target]["nfe"] = round(_mean([r["nfe"] for r in recs]))
        out.append(s)
    return out


def _target(r: Record) -> float:
    """What a cell aims at: its NFE budget, or its tolerance for an adaptive solver."""
    return r["tol"] if r.get("tol") is not None else r["nfe_target"]


def _solver_label(r: Record) -> str:
    name = r.get("label") or r["solver"]  # a learned solver's file: "learned-ipndm (l.json)"
    return f"{name}[{r['options_label']}]" if r.get("options_label") else name


def csv_text(records: list[Record]) -> str:
    """One CSV row per cell record, the columns of CSV_FIELDS."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in records:
        w.writerow({k: r.get(k) for k in CSV_FIELDS})
    return buf.getvalue()


def write_csv(records: list[Record], path: str | Path) -> None:
    """`csv_text` into a file."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(csv_text(records))


def fmt(v: float | None) -> str:
    """A value as the tables show it: 3 significant digits, "—" for none."""
    return "—" if v is None or not math.isfinite(v) else f"{v:.2e}"


def markdown(records: list[Record], *, metric: str = "rmse", fit_last: int | None = 3,
             fit_min_nfe: float | None = None) -> str:
    """Tables per problem/schedule: one row per series, one column per NFE target (plus the fitted
    order for RMSE), and for adaptive solvers one column per tolerance.

    A value whose counted NFE differs from the target (e.g. Heun at an odd budget) is marked with
    the counted NFE in brackets (adaptive solvers: always); failed cells read 'failed'.
    """
    lines: list[str] = []
    failed = {(r["problem"], r["schedule"], _solver_label(r), r["grid"], r["variable"], _target(r))
              for r in records if r.get("status") != "ok"}
    by_problem: dict[tuple[str, str], list[Series]] = defaultdict(list)
    for s in series(records):
        by_problem[(s.problem, s.schedule)].append(s)
    for (prob, sched), group in by_problem.items():
        mine = [r for r in records if r["problem"] == prob and r["schedule"] == sched]
        floors = [p[f"{metric}_floor"] for s in group for p in s.points.values()
                  if p.get(f"{metric}_floor") is not None]
        refs = [p["ref_err"] for s in group for p in s.points.values() if p.get("ref_err") is not None]
        tols = sorted({r["ref_tol"] for r in mine if r.get("ref_tol") is not None})
        lines.append(f"**{metric}** on `{prob}` (schedule `{sched}`)"
                     + (f": {METRIC_TITLE[metric]}" if metric in METRIC_TITLE else "") + "; reference error "
                     f"{fmt(max(refs, default=None))}"
                     + (f" (reference rtol {', '.join(f'{t:g}' for t in tols)})" if tols else "")
                     + (f"; floor {fmt(_mean(floors))} (an exact sampler's value at this sample size)" if floors
                        else ""))
        lines.append("")
        fixed = [s for s in group if s.grid != "adaptive"]
        adaptive = [s for s in group if s.grid == "adaptive"]
        if fixed:
            targets = sorted({r["nfe_target"] for r in mine if r.get("tol") is None})
            order = (fit_last, fit_min_nfe) if metric == "rmse" else None
            lines += _table(fixed, targets, metric, "NFE", failed, order)
        if adaptive:
            tols = sorted({r["tol"] for r in mine if r.get("tol") is not None}, reverse=True)
            lines += _table(adaptive, tols, metric, "tol", failed, None)
        lines += _tuning_cost(mine)
    return "\n".join(lines)


# per-cell training kinds (grid spec name): what their rows did, the cost's name, what a cached one is
_TRAINED = (("tuned", "were tuned", "tuning", "grid"), ("learned", "ran a solver learned", "learning", "solver"))


def _tuning_cost(records: list[Record]) -> list[str]:
    """Under a table with tuned or learned cells: the mean training cost per cell, for each of the two kinds (model
    evaluations, wall and CPU seconds; a learned solver's includes the tuning of the grid it starts from)."""
    lines = []
    for kind, did, cost, what in _TRAINED:
        mine = [r for r in records if r.get("tune_nfe") is not None and str(r.get("grid")).partition(":")[0] == kind]
        if not mine:
            continue
        mean = {k: _mean([r[k] for r in mine if r.get(k) is not None])
                for k in ("tune_nfe", "tune_seconds", "tune_cpu_seconds")}
        lines += [f"Rows on a `{kind}` grid {did} per cell on training draws (seed + offset) and measured on the "
                      f"cell's own held-out draws; {cost} cost per cell, mean of {len(mine)}: {mean['tune_nfe']:.0f} "
                      f"model evaluations, {mean['tune_seconds']:.1f} s wall, {mean['tune_cpu_seconds'] or 0:.1f} s "
                      f"CPU (a cached {what} reports its first {cost}).", ""]
    return [""] + lines if lines else []


LEGEND = """\
Legend: each value is the mean over seeds; a value followed by "(N)" spent N network evaluations
(counted), not the column's budget (e.g. Heun at an odd budget spends one less; adaptive solvers
always show theirs). "order" is the least-squares slope of log RMSE against log NFE over the
last points above 10× the reference error (their NFE range in brackets): it approaches the solver's
order in the asymptotic range. "reference error" is the RMSE between the float64 dopri8 reference
(rtol = atol = ref_tol) and one re-solve 10× tighter: errors below about 10× it are not resolved.
The SW2 table's "floor" is the sliced W2 between two independent exact sample sets of the same
size, the smallest SW2 a perfect sampler would show. A `tuned` grid is tuned per cell, and a `learned`
one runs a solver (grid and weights) learned per cell, on training draws disjoint from the cell's own
(held-out) draws. "failed": the cell raised (its error is in results.jsonl); "—": no value."""


DATA_NOTE = """\
The samples against the user's data, in data coordinates x/α(t_end) (diffsolve.bench.data): each table's "floor" is
the same statistic between other data samples and the reference half of the data at the cell's sample size, what an
exact sampler of the data scores (for MMD², the RMS of its noise around 0); a value near its floor is as good as
this many samples can tell. The FD table needs a feature network (--features)."""


def legend() -> str:
    """The legend printed under the tables."""
    return LEGEND


def _table(group: list[Series], targets: list[float], metric: str, what: str, failed: set[tuple[Any, ...]],
           order: tuple[int | None, float | None] | None) -> list[str]:
    head = [f"solver / grid / variable \\ {what}"] + [f"{t:g}" for t in targets] + (["order"] if order else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in group:
        row = [s.label]
        for t in targets:
            p = s.points.get(t)
            if p is None:
                row.append("failed" if (s.problem, s.schedule, s.solver, s.grid, s.variable, t) in failed else "")
            else:
                row.append(fmt(p.get(metric)) + ("" if what == "NFE" and p["nfe"] == t else f" ({p['nfe']})"))
        if order:
            p_fit, used = s.order(*order)
            row.append("—" if p_fit is None else f"{p_fit:.2f} (NFE {int(used[0])}–{int(used[-1])})")
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


MAX_LINES = 8  # lines per plot panel; a family with more is split into panels of near-equal size


def family(solver_label: str) -> str:
    """The solver's declared `family` ("other" for a name not in the registry)."""
    from ..solvers import SOLVERS

    if solver_label.startswith("learned-"):  # a learned solver's file ("learned-ipndm (l.json)")
        return "learned"
    solver = SOLVERS.get(solver_label.split("[")[0])
    return "other" if solver is None else str(solver.family or "other")


def panels(all_series: list[Series]) -> list[tuple[str, list[Series]]]:
    """(title, series) per plot panel: one family each, at most MAX_LINES lines, a solver's lines kept together
    (unless one solver alone has more)."""
    by_family: dict[str, dict[str, list[Series]]] = defaultdict(lambda: defaultdict(list))
    for s in all_series:
        by_family[family(s.solver)][s.solver].append(s)
    out = []
    for fam, by_solver in by_family.items():
        parts: list[list[Series]] = [[]]
        for lines in by_solver.values():
            for i in range(0, len(lines), MAX_LINES):
                chunk = lines[i:i + MAX_LINES]
                if parts[-1] and len(parts[-1]) + len(chunk) > MAX_LINES:
                    parts.append([])
                parts[-1] += chunk
        out += [(fam + (f" ({i + 1}/{len(parts)})" if len(parts) > 1 else ""), part) for i, part in enumerate(parts)]
    return out


MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
YLABEL = {"rmse": "RMSE per dimension vs reference", "sw2": "sliced W2 to exact samples",
          "data_sw2": "sliced W2 to the data", "data_mmd2": "MMD² to the data",
          "data_fd": "Fréchet distance (features)"}
MAX_TICKS = 10


def budgets(group: list[Series], metric: str = "rmse") -> list[float]:
    """Where a plot of `group` puts its NFE ticks: the fixed-step cells' NFE targets, else the counted NFE."""
    targets = [t for s in group if s.grid != "adaptive" for t, p in s.points.items() if p.get(metric) is not None]
    return targets or [n for s in group for n in s.curve(metric)[0]]


def nfe_axis(ax: Any, nfe: list[float], lim: tuple[float, float] | None = None) -> None:
    """A log x-axis of NFE with plain integer ticks at (up to MAX_TICKS of) the given budgets, no minor labels;
    `lim` fixes its range (panels of one figure share it)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = sorted({int(round(v)) for v in nfe if v > 0})
    if len(ticks) > MAX_TICKS:  # every k-th, keeping both ends
        k = math.ceil(len(ticks) / MAX_TICKS)
        ticks = ticks[::k] + ([ticks[-1]] if (len(ticks) - 1) % k else [])
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
    ax.xaxis.set_minor_locator(NullLocator())
    if lim is not None:
        ax.set_xlim(*lim)


def nfe_range(group: list[Series], metric: str) -> tuple[float, float]:
    """The x-range of a log NFE axis that holds every counted NFE of `group` (and its budgets), with a margin."""
    values = [n for s in group for n in s.curve(metric)[0]] + budgets(group, metric)
    return min(values) / 1.15, max(values) * 1.15


FLOOR_DECADES = 2.0  # a floor further below a panel's lowest point is named in the legend, not drawn


def floor_line(ax: Any, group: list[Series], metric: str) -> None:
    """The floor under a panel: the reference error for RMSE, the exact sampler's value for SW2 and the data metrics;
    drawn as a grey line when within FLOOR_DECADES of the panel's lowest point (else named in the legend, so that
    the panel keeps the range of its own data)."""
    key, label = ("ref_err", "reference error") if metric == "rmse" else (f"{metric}_floor", "floor (exact sampler)")
    values = [p[key] for s in group for p in s.points.values() if p.get(key) is not None]
    lowest = min((e for s in group for e in s.curve(metric)[1] if e > 0), default=None)
    if not values or max(values) <= 0 or lowest is None:
        return
    value = max(values) if metric == "rmse" else _mean(values)
    if value >= lowest / 10 ** FLOOR_DECADES:
        ax.axhline(value, color="grey", linewidth=1, label=f"{label} {fmt(value)}")
    else:
        ax.plot([], [], color="grey", linewidth=1, linestyle=":", label=f"{label} {fmt(value)} (far below)")


def plot(records: list[Record], path: str | Path, *, metric: str = "rmse", title: str | None = None) -> bool:
    """Log-log error vs counted NFE, a panel per solver family (≤ MAX_LINES lines each, each panel its own y-range),
    every line with its own colour and marker, the line style giving the integration variable, the floor (reference
    error or the metric's floor) as a grey line, integer NFE ticks. False when nothing to draw."""
    all_series = [s for s in series(records) if s.curve(metric)[0]]
    if not all_series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = panels(all_series)
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    styles = {"t": ":", "sigma": "-", "lambda": "--"}
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 4.8 * rows), squeeze=False)
    cmap = plt.get_cmap("tab10")
    ticks, lim = budgets(all_series, metric), nfe_range(all_series, metric)
    for ax, (name, group) in zip(axes.flat, groups):
        for i, s in enumerate(group):
            nfe, err = s.curve(metric)
            ax.loglog(nfe, err, linestyle=styles.get(s.variable, "-."), marker=MARKERS[i % len(MARKERS)],
                      markersize=5, color=cmap(i % 10), label=s.label)
        floor_line(ax, group, metric)
        nfe_axis(ax, ticks, lim)
        ax.set_title(name if len(groups) > 1 else "")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_ylabel(YLABEL.get(metric, metric))
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    for ax in axes.flat:
        ax.set_xlabel("NFE (counted)")
    fig.suptitle(title or ", ".join(sorted({f"{s.problem} ({s.schedule})" for s in all_series})))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
