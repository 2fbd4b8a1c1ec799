"""Step grids tuned to a model and a solver: DP over a fine candidate set, then derivative-free refinement.

Objective: the solver's end-point RMSE to a float64 teacher, E‖x_K(grid) − x*(t_end)‖², over training
draws of x_T; the error of the tuned grid on held-out draws is reported beside it.
(a) GITS-style dynamic programming: on M candidate times (uniform in λ) the teacher trajectory x*(t_i) is
    solved once; C[i, j] = RMSE of one DDIM step t_i → t_j from x*(t_i) against x*(t_j) (one model call per
    candidate: a DDIM step from t_i reuses ε(x*(t_i)) for every j); the K-step path 0 → M−1 minimising ΣC
    is found exactly by DP in O(K M²).
(b) Refinement: the best of the DP grid and the standard grids (by the solver's own training error) is
    refined by L-BFGS-B with finite-difference gradients (or Nelder–Mead) on the K step lengths in λ
    (softmax parameters: every grid is strictly monotone with exact end points) and, for solvers that call
    the model once per node, on K − 1 decoupled evaluation times λ'_i = λ_i − δ_i (the network sees t'_i at node i
    while the step uses t_i: time-shifted sampling), minimising the solver's training error itself,
    multistep history included.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import grids as grids_mod
from .errors import DiffsolveError, GridError, unknown_name
from .grids import Grid
from .models import Model
from .plan import own_variable, plan
from .points import make_points
from .problems import Problem
from .problems import resolve as resolve_problem
from .schedules import F64, Schedule, from_config
from .solve import solve
from .solvers import get_solver

STANDARD_GRIDS = ("logsnr", "time", "quadratic", "karras")


@dataclass
class TunedGrid:
    """A tuned grid with what it was tuned for and what it cost (docs/design.md §8); `save`/`load` as JSON."""

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
    cost_cpu_seconds: float = 0.0
    method: str = "dp+refine"
    optimizer: str = "lbfgs"
    decoupled: bool = False  # the grid carries decoupled evaluation times (grid.t_eval)
    chosen: str = ""  # which stage won on the validation draws: "start", "steps" or "steps+eval"
    validation_error: float | None = None
    validation_seeds: list[int] = field(default_factory=list)
    n: int = 0
    train_seeds: list[int] = field(default_factory=list)
    heldout_seeds: list[int] = field(default_factory=list)

    def extra(self) -> dict[str, Any]:
        """The grid file's fields beside times and schedule: solver, options, NFE, fingerprint, errors, cost."""
        d = {k: v for k, v in asdict(self).items() if k != "grid"}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}

    def save(self, path: str | Path) -> Path:
        """Write the grid file (diffsolve.grids format): `file:PATH` then loads wherever a grid is accepted."""
        return grids_mod.save(self.grid, path, kind="tuned", **self.extra())

    @classmethod
    def load(cls, path: str | Path, schedule: Schedule | None = None, fingerprint: str | None = None) -> TunedGrid:
        """Read a tuned grid file; refuse it when `schedule` or the problem `fingerprint` differ from the file's."""
        data = grids_mod.read_file(path)
        grids_mod.check_file(data, path, schedule, fingerprint)
        known = {f.name for f in fields(cls)} - {"grid"}
        missing = sorted(k for k in ("solver", "nfe", "train_error") if k not in data)
        if missing:
            raise GridError(f"grid file {str(path)!r} is a plain grid, not a tuned one (no {', '.join(missing)}); "
                            f"use it as 'file:{path}', or write a tuned grid with diffsolve tune")
        defaults = {"options": {}, "problem": "", "fingerprint": "", "heldout_error": None,
                    "start": "", "start_train_error": math.nan, "start_heldout_error": None, "cost_nfe": 0,
                    "cost_seconds": 0.0}
        values = {**defaults, **{k: v for k, v in data.items() if k in known}}
        if "variable" not in values:  # written before files named it: the variable the solver steps in
            values["variable"] = own_variable(values["solver"], values["options"])
        try:
            sched = from_config(data["schedule"])
        except (KeyError, TypeError, ValueError, DiffsolveError) as e:
            raise GridError(f"grid file {str(path)!r}: its schedule {data['schedule']!r} cannot be built ({e}); "
                            f"write it with diffsolve tune") from None
        return cls(grid=Grid(sched, data["times"], "tuned", grids_mod.eval_times_of(data, path)), **values)


def candidate_times(schedule: Schedule, count: int, t_start: float | None = None,
                    t_end: float | None = None) -> Tensor:
    """`count` candidate times uniform in λ from t_start (default t_max) to t_end (default t_min)."""
    return grids_mod.logsnr(schedule, count - 1, t_start, t_end).t


def teacher_path(problem: Problem, x_T: Tensor, schedule: Schedule, times: Tensor, tol: float) -> Tensor:
    """The float64 reference flow from x_T through every time in `times`, VP coordinates, shape (T, n, …)."""
    return problem.reference_path(x_T, schedule, times, tol, tol)


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


def _lam_grid(schedule: Schedule, lam0: float, lam1: float, params: np.ndarray, t0: float, t1: float,
              steps: int) -> Grid:
    """Grid whose λ-steps are softmax([θ, 0]) of the λ span (θ = params[:K−1]), end points exactly t0 and t1;
    with K − 1 more parameters δ, the evaluation times λ'_i = λ_i − δ_i (clipped to the span) at nodes 1…K−1
    (node 0 is t_max itself: it is evaluated there, and the last node is never evaluated)."""
    theta, delta = params[:steps - 1], params[steps - 1:]
    logits = np.concatenate([theta, [0.0]])
    w = np.exp(logits - logits.max())
    frac = np.concatenate([[0.0], np.cumsum(w / w.sum())])
    lam = lam0 + frac * (lam1 - lam0)
    t = schedule.t_from_lambda(torch.tensor(lam, dtype=F64))
    t[0], t[-1] = t0, t1
    if not len(delta):
        return Grid(schedule, t, "tuned")
    lam_eval = np.clip(lam[1:-1] - delta, min(lam0, lam1), max(lam0, lam1))
    shifted = schedule.t_from_lambda(torch.tensor(lam_eval, dtype=F64))
    keep = torch.as_tensor(delta == 0)
    shifted[keep] = t[1:-1][keep]  # an unshifted node is evaluated at exactly its own time
    t_eval = torch.cat([t[:1], shifted, t[-1:]])
    return Grid(schedule, t, "tuned", t_eval)


def _params_of(grid: Grid, eval_times: bool) -> np.ndarray:
    """The refinement's parameters of a grid: λ-step logits θ (and zero evaluation shifts δ)."""
    d = np.diff(grid.lam.numpy())
    logd = np.log(d / d.sum())
    theta = logd[:-1] - logd[-1]
    return np.concatenate([theta, np.zeros(grid.steps - 1)]) if eval_times else theta


METHODS = ("dp+refine", "dp", "refine")
OPTIMIZERS = ("lbfgs", "nelder-mead")


@torch.no_grad()  # no autograd graph through the user's network: tuning only evaluates it
def tune(
    problem: Problem | Model | str,
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
    method: str = "dp+refine",
    restarts: int = 1,
    eval_times: bool | None = None,
    optimizer: str = "lbfgs",
    validation_seeds: list[int] | None = None,
    shape: tuple[int, ...] | None = None,
    **solver_options: Any,
) -> TunedGrid:
    """A grid minimising `solver`'s error at `nfe` to a float64 teacher on draws of x_T from `train_seeds`.

    (a) DP over `candidates` λ-uniform times with a measured DDIM cost matrix; (b) L-BFGS-B (finite-difference
    gradients; `optimizer="nelder-mead"` for derivative-free) on the step lengths from the best of (a) and the
    standard grids, and with `eval_times` (default: whenever the solver calls the model once per grid node)
    on decoupled evaluation times too. `method`: "dp+refine" (both), "dp" (the DP grid alone), "refine"
    (refinement from the best standard grid); `restarts` > 1 also refines from the next-best starts.
    The step times alone and the step and evaluation times are refined from the same start; the start and each
    refinement are compared on draws from `validation_seeds` (default: each training seed + 7919, moved off
    the training and held-out seeds; [] compares training errors) and the best is returned. `problem`: a name,
    a Problem or a
    Model (diffsolve.problems.resolve; a Model without a `shape` attribute needs `shape=`). Held-out
    error on `heldout_seeds` (never used for tuning). Deterministic given the seeds and the machine: the
    number of torch threads changes the round-off of reductions, which the finite-difference gradients
    follow, so other thread counts can end in another local optimum.
    """
    if method not in METHODS:
        raise DiffsolveError(unknown_name("tuning method", method, list(METHODS)))
    prob = resolve_problem(problem, shape=shape)
    solver_obj = get_solver(solver)
    if solver_obj.adaptive or solver_obj.stochastic:
        raise DiffsolveError(f"tuning needs a fixed-step deterministic solver; {solver!r} is "
                             f"{'adaptive' if solver_obj.adaptive else 'stochastic'}; pick e.g. ipndm or dpmpp2m")
    if optimizer not in OPTIMIZERS:
        raise DiffsolveError(unknown_name("tuning optimizer", optimizer, list(OPTIMIZERS)))
    if eval_times is None:
        eval_times = solver_obj.evaluates_at_nodes and method != "dp"
    elif eval_times and not solver_obj.evaluates_at_nodes:
        raise DiffsolveError(f"eval_times=True needs a solver that calls the model once per grid node; {solver!r} "
                             f"does not (pass eval_times=False, or a multistep solver such as ipndm)")
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise DiffsolveError(f"restarts must be a positive integer, got {restarts!r}; e.g. restarts=2")
    if not train_seeds:
        raise DiffsolveError("train_seeds is empty; give at least one seed for the training draws of x_T")
    if heldout_seeds and set(train_seeds) & set(heldout_seeds):
        raise DiffsolveError(f"train_seeds {list(train_seeds)} and heldout_seeds {list(heldout_seeds)} overlap; "
                             f"held-out draws must not be used for tuning")
    val_seeds = _validation_seeds(list(train_seeds), list(heldout_seeds or []), validation_seeds)
    sched = schedule or prob.default_schedule()
    model = prob.model(sched, dtype=F64)
    cell = plan(model, solver_obj, nfe=int(nfe), variable=variable, options=solver_options)
    steps, options, dyn, variable = cell.steps, cell.options, cell.dynamics, cell.dynamics.variable
    t0, t1 = sched.t_max, sched.t_min
    lam0, lam1 = float(sched.lam(t0)), float(sched.lam(t1))
    clock, cpu = time.perf_counter(), time.process_time()
    nfe_before = model.nfe

    def draws(seeds: list[int]) -> tuple[Tensor, Tensor]:
        xs = torch.cat([prob.x_T(n, s, sched) for s in seeds])
        return xs, prob.reference(xs, sched, rtol=teacher_tol, atol=teacher_tol)

    cand = candidate_times(sched, candidates if method != "refine" else 2)
    x_train = torch.cat([prob.x_T(n, s, sched) for s in train_seeds])
    path = teacher_path(prob, x_train, sched, cand, teacher_tol)
    target = path[-1]

    def error(grid: Grid, x: Tensor = x_train, ref: Tensor = target) -> float:
        sol = solve(dyn, x, grid, solver_obj, **options)
        e = float(torch.sqrt(torch.mean((sol.x.to(F64) - ref) ** 2)))
        return e if math.isfinite(e) else math.inf

    starts: dict[str, Grid] = {}
    if method != "refine":
        starts["dp"] = grids_mod.custom(sched, cand[dp_path(ddim_costs(model, path, cand), steps)])
    if method != "dp":
        starts.update((name, grids_mod.make(name, sched, steps)) for name in STANDARD_GRIDS)
    scored = sorted((error(g), name) for name, g in starts.items())
    start_err, start_name = scored[0]
    found: list[tuple[str, Grid, float]] = [("start", starts[start_name], start_err)]  # (stage, grid, train error)
    if method != "dp" and steps > 1:
        def grid_of(params: np.ndarray) -> Grid:
            return _lam_grid(sched, lam0, lam1, params, t0, t1, steps)

        def objective(params: np.ndarray) -> float:
            try:
                return error(grid_of(params))
            except GridError:  # steps below float resolution: not a grid
                return math.inf

        refine = _lbfgs if optimizer == "lbfgs" else _nelder_mead
        # from each of the best `restarts` starts: the step times alone, and (from the same start) with the
        # evaluation times
        for e0, name in scored[:restarts]:
            for stage, decouple in (("steps", False), ("steps+eval", True))[:1 + eval_times]:
                p0 = _params_of(starts[name], decouple)
                params, err = refine(objective, p0, e0, max_evals or 100 * len(p0))
                found.append((stage, grid_of(params), err))
    # the choice among start and refinements: by the error on validation draws (other seeds than training and
    # held-out: the decoupled times can fit the training draws' few mode-boundary samples), else by training
    val_err = None
    if val_seeds and len(found) > 1:
        x_v, ref_v = draws(val_seeds)
        scores = [error(g, x_v, ref_v) for _, g, _ in found]
        pick = min(range(len(found)), key=lambda i: (scores[i], found[i][2]))
        val_err = scores[pick]
    else:
        pick = min(range(len(found)), key=lambda i: found[i][2])
    chosen, best, best_err = found[pick]
    cost_nfe, seconds, cpu = model.nfe - nfe_before, time.perf_counter() - clock, time.process_time() - cpu
    held = held_start = None
    if heldout_seeds:
        x_h, ref_h = draws(list(heldout_seeds))
        held, held_start = error(best, x_h, ref_h), error(starts[start_name], x_h, ref_h)
    grid = Grid(sched, best.t, "tuned", best.t_eval)
    return TunedGrid(grid=grid, solver=solver_obj.name, options=dict(solver_options), nfe=int(nfe),
                     variable=variable, problem=prob.name, fingerprint=prob.fingerprint(), train_error=best_err,
                     heldout_error=held, start=start_name, start_train_error=start_err,
                     start_heldout_error=held_start, cost_nfe=cost_nfe, cost_seconds=seconds, cost_cpu_seconds=cpu,
                     method=method, optimizer=optimizer, decoupled=best.decoupled, chosen=chosen,
                     validation_error=val_err, validation_seeds=val_seeds, train_seeds=list(train_seeds),
                     heldout_seeds=list(heldout_seeds or []), n=n)


VALIDATION_OFFSET = 7919


def _validation_seeds(train: list[int], heldout: list[int], given: list[int] | None) -> list[int]:
    """The validation seeds: `given` (checked disjoint from training and held-out), or each training seed
    + 7919, moved up past any training or held-out seed."""
    if given is not None:
        clash = set(given) & (set(train) | set(heldout))
        if clash:
            raise DiffsolveError(f"validation_seeds {list(given)} overlap the training or held-out seeds "
                                 f"({sorted(clash)}); pick other seeds, or [] for no validation")
        return list(given)
    taken, out = set(train) | set(heldout), []
    for s in train:
        v = s + VALIDATION_OFFSET
        while v in taken:
            v += 1
        taken.add(v)
        out.append(v)
    return out


def _lbfgs(f: Any, p0: np.ndarray, f0: float, budget: int) -> tuple[np.ndarray, float]:
    """L-BFGS-B on f² (the mean squared error) with forward-difference gradients, within `budget` evaluations."""
    from scipy.optimize import minimize

    res = minimize(lambda p: f(p) ** 2, p0, method="L-BFGS-B",
                   options={"maxfun": budget, "eps": 1e-5, "ftol": 1e-10 * f0 * f0, "gtol": 0.0})
    value = math.sqrt(float(res.fun)) if math.isfinite(res.fun) else math.inf
    return (np.asarray(res.x), value) if value < f0 else (p0, f0)


def _nelder_mead(f: Any, theta0: np.ndarray, f0: float, budget: int) -> tuple[np.ndarray, float]:
    """Nelder–Mead on f from θ0 within `budget` evaluations, restarted with a fresh simplex while it improves."""
    from scipy.optimize import minimize

    best, best_f, used, scale = theta0, f0, 0, 0.3
    while used < budget:
        simplex = best + scale * np.vstack([np.zeros(len(best)), np.eye(len(best))])
        res = minimize(f, best, method="Nelder-Mead", options={
            "maxfev": budget - used, "xatol": 1e-4, "fatol": 1e-9 * best_f, "initial_simplex": simplex})
        used += int(res.nfev)
        if not res.fun < best_f * (1 - 1e-4):
            break
        best, best_f, scale = np.asarray(res.x), float(res.fun), scale / 2
    return best, best_f
