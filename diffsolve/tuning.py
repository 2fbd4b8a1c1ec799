"""Step grids tuned to a model and a solver: DP over a fine candidate set, then derivative-free refinement.

Objective: the solver's end-point RMSE to a float64 teacher, E‖x_K(grid) − x*(t_end)‖², over training
draws of x_T; the error of the tuned grid on held-out draws is reported beside it.
(a) GITS-style dynamic programming: on M candidate times (uniform in λ) the teacher trajectory x*(t_i) is
    solved once; C[i, j] = RMSE of one DDIM step t_i → t_j from x*(t_i) against x*(t_j) (one model call per
    candidate: a DDIM step from t_i reuses ε(x*(t_i)) for every j); the K-step path 0 → M−1 minimising ΣC
    is found exactly by DP in O(K M²).
(b) Refinement: the best of the DP grid and the standard grids (by the solver's own training error) is
    refined by Nelder–Mead on the K step lengths in λ (softmax parameters: every grid is strictly monotone
    with exact end points), minimising the solver's training error itself, multistep history included.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import grids as grids_mod
from .dynamics import ode
from .errors import DiffsolveError, GridError
from .grids import Grid
from .models import Model
from .points import make_points
from .problems import Problem
from .problems import get as get_problem
from .schedules import F64, Schedule, from_config
from .solve import solve
from .solvers import get_solver

STANDARD_GRIDS = ("logsnr", "time", "quadratic", "karras")
GRID_FILE_VERSION = 1


@dataclass
class TunedGrid:
    """A tuned grid with what it was tuned for and what it cost (DESIGN §8); `save`/`load` as JSON."""

    grid: Grid
    solver: str
    options: dict[str, Any]
    nfe: int
    variable: str
    problem: str
    fingerprint: str
    train_error: float
    heldout_error: float | None
    start: str  # which grid the refinement started from ("dp" or a standard grid's name)
    start_train_error: float
    start_heldout_error: float | None
    cost_nfe: int
    cost_seconds: float
    method: str = "dp+nelder-mead"
    train_seeds: list[int] = field(default_factory=list)
    heldout_seeds: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record: times, schedule config, solver, options, NFE, fingerprint, errors, cost."""
        d = {k: v for k, v in asdict(self).items() if k != "grid"}
        return {"version": GRID_FILE_VERSION, "times": self.grid.t.tolist(),
                "schedule": self.grid.schedule.to_config(), **d}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path, schedule: Schedule | None = None, fingerprint: str | None = None) -> TunedGrid:
        """Read a grid file; refuse it when `schedule` or the problem `fingerprint` differ from the file's."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            sched = from_config(data["schedule"])
            times = data["times"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise GridError(f"cannot read grid file {str(path)!r} ({type(e).__name__}: {e}); write it with "
                            f"diffsolve tune or TunedGrid.save") from None
        if schedule is not None and sched != schedule:
            raise GridError(
                f"grid file {str(path)!r} was tuned on {sched!r} but is used with {schedule!r}; tune a grid for "
                f"this schedule (diffsolve tune) or use a standard grid"
            )
        if fingerprint is not None and data.get("fingerprint") not in (None, fingerprint):
            raise GridError(
                f"grid file {str(path)!r} was tuned for problem fingerprint {data.get('fingerprint')!r}, not "
                f"{fingerprint!r} (another model or its weights changed); tune again for this model"
            )
        fields_ = {k: v for k, v in data.items() if k not in ("version", "times", "schedule")}
        return cls(grid=grids_mod.custom(sched, times), **fields_)


def candidate_times(schedule: Schedule, count: int, t_start: float | None = None,
                    t_end: float | None = None) -> Tensor:
    """`count` candidate times uniform in λ from t_start (default t_max) to t_end (default t_min)."""
    return grids_mod.logsnr(schedule, count - 1, t_start, t_end).t


def teacher_path(problem: Problem, x_T: Tensor, schedule: Schedule, times: Tensor, tol: float) -> Tensor:
    """The float64 reference flow from x_T through every time in `times`, VP coordinates, shape (T, n, …)."""
    own = getattr(problem, "reference_path", None)
    if own is not None:
        return own(x_T, schedule, times, tol, tol)
    model = problem.model(schedule, dtype=F64)
    sol = solve(ode(model, "lambda"), x_T.to(F64), grids_mod.custom(schedule, times), "dopri8",
                trajectory=True, rtol=tol, atol=tol)
    return sol.trajectory


def ddim_costs(model: Model, path: Tensor, times: Tensor) -> np.ndarray:
    """C[i, j] (i < j) = RMSE of one DDIM step t_i → t_j from path[i] against path[j]; +∞ elsewhere.

    DDIM in VP coordinates: x_j = α_j (x_i/α_i + (σ̄_j − σ̄_i) ε(x_i, t_i)), one model call per i.
    """
    pts = make_points(model.schedule, times)
    m = len(pts)
    alpha = torch.tensor([p.alpha for p in pts], dtype=F64)
    sbar = torch.tensor([p.sigma_bar for p in pts], dtype=F64)
    cost = np.full((m, m), np.inf)
    for i in range(m - 1):
        x_i = path[i]
        eps = model.eps_at(x_i.to(F64), pts[i]).to(F64)
        xbar = x_i / alpha[i]
        for j in range(i + 1, m):
            pred = alpha[j] * (xbar + (sbar[j] - sbar[i]) * eps)
            cost[i, j] = float(torch.sqrt(torch.mean((pred - path[j]) ** 2)))
    return cost


def dp_path(cost: np.ndarray, steps: int) -> list[int]:
    """The path 0 = i_0 < … < i_K = M−1 with K = `steps` minimising Σ_k C[i_k, i_{k+1}] (exact DP)."""
    m = cost.shape[0]
    if not 1 <= steps <= m - 1:
        raise GridError(f"cannot pick {steps} steps from {m} candidate times; use between 1 and {m - 1} steps")
    best = np.full((steps + 1, m), np.inf)  # best[k, j]: cheapest k-step path 0 → j
    back = np.zeros((steps + 1, m), dtype=np.int64)
    best[0, 0] = 0.0
    for k in range(1, steps + 1):
        total = best[k - 1][:, None] + cost  # total[i, j] = best[k−1, i] + C[i, j]
        back[k] = np.argmin(total, axis=0)
        best[k] = total[back[k], np.arange(m)]
    path = [m - 1]
    for k in range(steps, 0, -1):
        path.append(int(back[k, path[-1]]))
    return path[::-1]


def _lam_grid(schedule: Schedule, lam0: float, lam1: float, theta: np.ndarray, t0: float, t1: float) -> Grid:
    """Grid whose λ-steps are softmax([θ, 0]) of the λ span, end points exactly t0 and t1."""
    logits = np.concatenate([theta, [0.0]])
    w = np.exp(logits - logits.max())
    frac = np.concatenate([[0.0], np.cumsum(w / w.sum())])
    lam = torch.tensor(lam0 + frac * (lam1 - lam0), dtype=F64)
    t = schedule.t_from_lambda(lam)
    t[0], t[-1] = t0, t1
    return Grid(schedule, t, "tuned")


def _theta_of(grid: Grid) -> np.ndarray:
    d = np.diff(grid.lam.numpy())
    logd = np.log(d / d.sum())
    return logd[:-1] - logd[-1]


def tune(
    problem: Problem | str,
    solver: str,
    nfe: int,
    *,
    train_seeds: list[int] = (0,),
    heldout_seeds: list[int] | None = (1,),
    n: int = 128,
    variable: str | None = None,
    schedule: Schedule | None = None,
    candidates: int = 64,
    teacher_tol: float = 1e-8,
    max_evals: int | None = None,
    **solver_options: Any,
) -> TunedGrid:
    """A grid minimising `solver`'s error at `nfe` to a float64 teacher on draws of x_T from `train_seeds`.

    (a) DP over `candidates` λ-uniform times with a measured DDIM cost matrix; (b) Nelder–Mead on the
    step lengths from the best of (a) and the standard grids. Held-out error on `heldout_seeds` (never
    used for tuning). Deterministic given the seeds.
    """
    from scipy.optimize import minimize

    prob = get_problem(problem)
    method = get_solver(solver)
    if method.adaptive or method.stochastic:
        raise DiffsolveError(f"tuning needs a fixed-step deterministic solver; {solver!r} is "
                             f"{'adaptive' if method.adaptive else 'stochastic'}")
    if not train_seeds:
        raise DiffsolveError("train_seeds is empty; give at least one seed for the training draws of x_T")
    if heldout_seeds and set(train_seeds) & set(heldout_seeds):
        raise DiffsolveError(f"train_seeds {list(train_seeds)} and heldout_seeds {list(heldout_seeds)} overlap; "
                             f"held-out draws must not be used for tuning")
    sched = schedule or prob.default_schedule()
    steps = method.steps_for(int(nfe))
    options = {**method.budget_options(int(nfe)), **solver_options}
    declared = method.integrates_for(**options).variables
    variable = variable or (declared[0] if declared else "sigma")
    model = prob.model(sched, dtype=F64)
    dyn = ode(model, variable)
    t0, t1 = sched.t_max, sched.t_min
    lam0, lam1 = float(sched.lam(t0)), float(sched.lam(t1))
    clock = time.perf_counter()
    nfe_before = model.nfe

    def draws(seeds: list[int]) -> tuple[Tensor, Tensor]:
        xs = torch.cat([prob.x_T(n, s, sched) for s in seeds])
        return xs, prob.reference(xs, sched, rtol=teacher_tol, atol=teacher_tol)

    cand = candidate_times(sched, candidates)
    x_train = torch.cat([prob.x_T(n, s, sched) for s in train_seeds])
    path = teacher_path(prob, x_train, sched, cand, teacher_tol)
    target = path[-1]

    def error(grid: Grid, x: Tensor = x_train, ref: Tensor = target) -> float:
        sol = solve(dyn, x, grid, method, **options)
        e = float(torch.sqrt(torch.mean((sol.x.to(F64) - ref) ** 2)))
        return e if math.isfinite(e) else math.inf

    costs = ddim_costs(model, path, cand)
    starts = {"dp": grids_mod.custom(sched, cand[dp_path(costs, steps)])}
    for name in STANDARD_GRIDS:
        starts[name] = grids_mod.make(name, sched, steps)
    scored = sorted((error(g), name) for name, g in starts.items())
    start_err, start_name = scored[0]
    theta0 = _theta_of(starts[start_name])
    if steps > 1:
        res = minimize(lambda th: error(_lam_grid(sched, lam0, lam1, th, t0, t1)), theta0, method="Nelder-Mead",
                       options={"maxfev": max_evals or 150 * steps, "xatol": 1e-4, "fatol": 1e-9 * start_err,
                                "initial_simplex": theta0 + 0.3 * np.vstack([np.zeros(len(theta0)),
                                                                             np.eye(len(theta0))])})
        best = _lam_grid(sched, lam0, lam1, res.x, t0, t1)
        best_err = error(best)
        if best_err > start_err:  # never return worse than the start
            best, best_err = starts[start_name], start_err
    else:
        best, best_err = starts[start_name], start_err
    cost_nfe, seconds = model.nfe - nfe_before, time.perf_counter() - clock
    held = held_start = None
    if heldout_seeds:
        x_h, ref_h = draws(list(heldout_seeds))
        held, held_start = error(best, x_h, ref_h), error(starts[start_name], x_h, ref_h)
    grid = Grid(sched, best.t, "tuned")
    return TunedGrid(grid=grid, solver=method.name, options=dict(solver_options), nfe=int(nfe), variable=variable,
                     problem=prob.name, fingerprint=prob.fingerprint(), train_error=best_err, heldout_error=held,
                     start=start_name, start_train_error=start_err, start_heldout_error=held_start,
                     cost_nfe=cost_nfe, cost_seconds=seconds, train_seeds=list(train_seeds),
                     heldout_seeds=list(heldout_seeds or []))
