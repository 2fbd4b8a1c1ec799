"""Cell kind 'sde': strong and weak errors of stochastic samplers of the reverse VP-SDE.

Strong error (`rmse`): RMS per dimension of x_N − x_ref, where x_ref solves the same reverse SDE from
the same x_T on the same seeded Brownian path with a fine-step method (params ref_solver, default
'srk' of strong order 1.5, on ref_steps uniform-t steps, default 2048). `ref_err` is the RMS distance
between that reference and one on half its steps: an upper bound of its own error.
Weak error: `sw2` to exact samples of p_{t_end} beside `sw2_floor` (two exact sets), and the errors
of the sample mean (`mean_err`, RMS per dimension) and covariance (`cov_err`, ‖Ĉ − C‖_F / d) against
the exact moments of p_{t_end}, each beside the same statistic of an exact sample set of equal size
(`mean_err_floor`, `cov_err_floor`). `order_theory` is the solver's declared strong order.
params: ref_solver, ref_steps, ref_grid, device (e.g. "cuda"), path ("dyadic", the grid-independent path of
`brownian_path`; or "grid", the cheaper `grid_path` for weak errors only: strong errors are then not measured).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import DiffsolveError
from ..plan import plan
from ..solve import solve
from ..solvers import get_solver
from ..solvers.brownian import grid_path
from . import metrics
from .cells import data_fields, reference_errors, register_kind
from .inputs import DTYPE, Inputs
from .report import Record, series
from .suite import Cell

F64 = torch.float64
PATH_STREAM = 5  # the Brownian path's seed is derived from the cell's seed on its own stream
DEFAULT_PARAMS = {"ref_solver": "srk", "ref_steps": 2048, "ref_grid": "time", "device": "cpu", "path": "dyadic"}
PATHS = ("dyadic", "grid")


def path_seed(seed: int) -> int:
    """The Brownian path's seed for a cell seed (independent of the x_T and exact-sample streams)."""
    return seed * 1_000_003 + PATH_STREAM


def _params(cell: Cell) -> dict[str, Any]:
    unknown = set(cell.params) - set(DEFAULT_PARAMS)
    if unknown:
        raise DiffsolveError(
            f"unknown 'sde' cell param(s) {', '.join(sorted(unknown))}; valid ones are {', '.join(DEFAULT_PARAMS)}"
        )
    p = {**DEFAULT_PARAMS, **cell.params}
    if p["path"] not in PATHS:
        raise DiffsolveError(f"'sde' cell param path must be one of {', '.join(PATHS)}, got {p['path']!r}")
    return p


def solve_reverse_sde(cell: Cell, inputs: Inputs, solver: str, grid: str, device: str, path: str = "dyadic", *,
                      nfe: int | None = None, steps: int | None = None) -> tuple[Tensor, int, int, float]:
    """The reverse SDE from the cell's x_T on the cell's path, planned like every cell (diffsolve.plan) at `nfe`
    (or `steps`) on `grid`: (x at t_end in VP coords float64, NFE, steps, seconds)."""
    sched, dtype = inputs.schedule(cell), DTYPE[cell.dtype]
    model = inputs.problem(cell).model(sched, dtype=dtype)
    p = plan(model, solver, nfe=nfe, steps=steps, grid=grid, variable="t",
             options=dict(cell.options) if solver == cell.solver else {},
             fingerprint=inputs.problem(cell).fingerprint())
    x_T = inputs.x_T(cell).to(device=device, dtype=dtype)
    start, end = p.grid.points[0], p.grid.points[-1]
    noise: dict[str, Any] = {"seed": path_seed(cell.seed)}
    if path == "grid":
        noise = {"bm": grid_path(p.dynamics, p.grid, tuple(x_T.shape), dtype, device, path_seed(cell.seed))}
    t0 = time.perf_counter()
    sol = solve(p.dynamics, model.from_vp(x_T, start), p.grid, p.solver, **noise, **p.options)
    if device != "cpu":
        torch.cuda.synchronize()
    return model.to_vp(sol.x, end).to("cpu", F64), sol.nfe, p.grid.steps, time.perf_counter() - t0


def reference(cell: Cell, inputs: Inputs) -> tuple[Tensor, float]:
    """(fine-step solution on the cell's Brownian path, RMS distance to the same on half the steps)."""
    p = _params(cell)

    def make() -> tuple[Tensor, float]:
        t0 = time.perf_counter()
        steps = int(p["ref_steps"])
        ref = solve_reverse_sde(cell, inputs, p["ref_solver"], p["ref_grid"], p["device"], steps=steps)[0]
        coarse = solve_reverse_sde(cell, inputs, p["ref_solver"], p["ref_grid"], p["device"], steps=steps // 2)[0]
        inputs.reference_seconds += time.perf_counter() - t0
        return ref, metrics.rmse(ref, coarse)

    key = ("sde-ref", cell.problem, cell.fingerprint, cell.schedule, cell.n, cell.seed, cell.dtype,
           p["ref_solver"], int(p["ref_steps"]), p["ref_grid"], p["device"])
    return inputs.memo(key, make)


def exact_moments(cell: Cell, inputs: Inputs) -> tuple[Tensor, Tensor] | None:
    """Mean and covariance of p_{t_end} in VP coordinates, where the problem declares them (else None)."""
    sched = inputs.schedule(cell)
    return inputs.problem(cell).exact_moments(sched, sched.t_min)


def moment_errors(x: Tensor, mean: Tensor, cov: Tensor) -> tuple[float, float]:
    """(RMS per dimension of mean(x) − mean, ‖cov(x) − cov‖_F / d)."""
    x = x.to(F64).reshape(x.shape[0], -1)
    d = x.shape[1]
    mean_err = float(torch.sqrt(torch.mean((x.mean(0) - mean) ** 2)))
    cov_err = float(torch.linalg.matrix_norm(torch.cov(x.T) - cov)) / d
    return mean_err, cov_err


def sde_cell(cell: Cell, inputs: Inputs) -> dict[str, Any]:
    """One stochastic solve, measured by strong error (same path, fine reference) and weak errors."""
    if cell.variable != "t":
        raise DiffsolveError(
            f"stochastic solvers integrate the reverse SDE in t; got variable {cell.variable!r}. "
            f"Give variables = ['t'] for 'sde' cells"
        )
    p = _params(cell)
    solver = get_solver(cell.solver)
    x, nfe, steps, seconds = solve_reverse_sde(cell, inputs, cell.solver, cell.grid, p["device"], p["path"],
                                               nfe=cell.nfe)
    out: dict[str, Any] = {
        "nfe": nfe, "steps": steps, "seconds": seconds, "rmse": None, "rel_err": None, "max_err": None,
        "ref_err": None, "order_theory": solver.order, "sw2": None, "sw2_floor": None,
        "mean_err": None, "cov_err": None, "mean_err_floor": None, "cov_err_floor": None,
    }
    if p["path"] == "dyadic":  # strong errors need the grid-independent path
        ref, ref_err = reference(cell, inputs)
        out.update({**reference_errors(cell, inputs, x, ref), "ref_err": ref_err})
    out.update(data_fields(cell, inputs, x))
    exact = inputs.exact_sets(cell)
    if exact is not None:
        a, b, floor = exact
        out["sw2"], out["sw2_floor"] = metrics.sliced_w2(x, b, cell.sw2_projections), floor
        moments = exact_moments(cell, inputs)
        if moments is not None:
            out["mean_err"], out["cov_err"] = moment_errors(x, *moments)
            out["mean_err_floor"], out["cov_err_floor"] = moment_errors(a, *moments)
    return out


def prepare_sde(cell: Cell, inputs: Inputs) -> None:
    """What the 'sde' cells of one problem share, built once: the fine-step reference (on the dyadic path) and the
    exact sample sets."""
    if _params(cell)["path"] == "dyadic":
        reference(cell, inputs)
    inputs.exact_sets(cell)


register_kind("sde", sde_cell, prepare_sde)


# ---- reports ---------------------------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.2e}"


def _by_series(records: list[Record]) -> dict[str, dict[int, list[Record]]]:
    """'ok' sde records by 'solver / grid / n=… [/ grid path]' and NFE target."""
    out: dict[str, dict[int, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get("kind") == "sde" and r.get("status") == "ok":
            solver = r["solver"] + (f"[{r['options_label']}]" if r.get("options_label") else "")
            path = (r.get("params") or {}).get("path", "dyadic")
            label = f"{solver} / {r['grid']} / n={r['n']}" + (" / grid path" if path == "grid" else "")
            out[label][r["nfe_target"]].append(r)
    return out


def _avg(recs: list[Record], key: str) -> float | None:
    vals = [r[key] for r in recs if r.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def strong_weak_markdown(records: list[Record], fit_last: int | None = 3) -> str:
    """Tables of the 'sde' records: strong error by NFE with fitted and theoretical strong order; weak errors."""
    groups = _by_series(records)
    if not groups:
        return ""
    strong = {k: g for k, g in groups.items() if any(r.get("rmse") is not None for rs in g.values() for r in rs)}
    targets = sorted({t for g in strong.values() for t in g})
    refs = [r["ref_err"] for g in strong.values() for rs in g.values() for r in rs if r.get("ref_err") is not None]
    lines = [f"**strong error** (RMS per dimension against a fine solution on the same Brownian path; "
             f"reference accuracy ≤ {_fmt(max(refs, default=None))}), by NFE", "",
             "| solver / grid / n | " + " | ".join(map(str, targets)) + " | fitted order | theory |",
             "|" + "---|" * (len(targets) + 3)]
    for label, pts in strong.items():
        row = [label] + [_fmt(_avg(pts[t], "rmse")) if t in pts else "" for t in targets]
        nfe = [_avg(pts[t], "nfe") for t in sorted(pts)]
        err = [_avg(pts[t], "rmse") for t in sorted(pts)]
        order, used = metrics.fitted_order(nfe, err, last=fit_last, floor=10 * max(refs, default=0.0))
        row.append("—" if order is None else f"{order:.2f} (NFE {int(used[0])}–{int(used[-1])})")
        row.append(f"{_avg(next(iter(pts.values())), 'order_theory'):g}")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for n in sorted({r["n"] for g in groups.values() for rs in g.values() for r in rs}):
        sub = {k: g for k, g in groups.items() if next(iter(g.values()))[0]["n"] == n}
        recs = [r for g in sub.values() for rs in g.values() for r in rs]
        targets = sorted({t for g in sub.values() for t in g})
        floors = {k: _avg(recs, k) for k in ("sw2_floor", "mean_err_floor", "cov_err_floor")}
        lines += [f"**weak error**, n = {n} samples, by NFE: SW2 to exact samples (floor {_fmt(floors['sw2_floor'])})"
                  f" / error of the mean (floor {_fmt(floors['mean_err_floor'])}) / error of the covariance "
                  f"(floor {_fmt(floors['cov_err_floor'])})", "",
                  "| solver / grid / n | " + " | ".join(map(str, targets)) + " |", "|" + "---|" * (len(targets) + 1)]
        for label, pts in sub.items():
            cells = [" / ".join(_fmt(_avg(pts[t], k)) for k in ("sw2", "mean_err", "cov_err")) if t in pts else ""
                     for t in targets]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_ode_vs_sde(records: list[Record], path: str | Path, title: str | None = None) -> None:
    """SW2 to exact samples against counted NFE: ODE samplers solid, SDE samplers dashed, the floor in grey.

    Only the records with the largest sample count n that have SW2 are drawn (one floor, one resolution).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_sw2 = [r for r in records if r.get("sw2") is not None and r.get("status") == "ok"]
    n_max = max((r["n"] for r in with_sw2), default=0)
    records = [r for r in with_sw2 if r["n"] == n_max]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    cmap = plt.get_cmap("tab10")
    floors = []
    for i, s in enumerate(x for x in series(records) if x.curve("sw2")[0]):
        nfe, sw2 = s.curve("sw2")
        floors += [p["sw2_floor"] for p in s.points.values() if p.get("sw2_floor") is not None]
        label = f"{s.solver} / {s.grid}" + ("" if s.kind == "sde" else f" / {s.variable}") + f" ({s.kind.upper()})"
        ax.loglog(nfe, sw2, linestyle="--" if s.kind == "sde" else "-", marker="o" if s.kind == "sde" else "s",
                  markersize=4, color=cmap(i % 10), label=label)
    if floors:
        ax.axhline(sum(floors) / len(floors), color="grey", linewidth=1, label="SW2 floor (two exact sets)")
    ax.set_xlabel("NFE (counted)")
    ax.set_ylabel("sliced W2 to exact samples of p(t_end)")
    ax.set_title(title or "deterministic (ODE) vs stochastic (SDE) samplers at equal NFE")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
