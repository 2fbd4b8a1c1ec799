"""One NFE of a tune() call: the starts (DP path, standard grids), the refinement stages, the choice on validation
draws, the teacher's bound, the held-out error and the TunedGrid."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from .. import grids as grids_mod
from ..grids import Grid
from ..plan import Plan, plan
from ..schedules import F64
from .dp import dp_path
from .objective import Fit, Objective, TuningError
from .refine import Best, lbfgs, nelder_mead
from .result import TunedGrid
from .session import Session
from .settings import (
    AUTOGRAD_EVALS,
    FD_EVALS_PER_PARAMETER,
    STANDARD_GRIDS,
    TEACHER_BOUND,
    TEACHER_LEVELS,
    Settings,
    TuningNotice,
)
from .span import Span


@dataclass
class Found:
    """A candidate grid of one stage ("start", "steps", "steps+eval") and its training objective."""

    stage: str
    grid: Grid
    value: float


def tune_nfe(session: Session, nfe: int, s: Settings, shared: bool) -> TunedGrid:
    """Search at the lowest teacher level whose measured error is within its bound (0.1× the training error
    reached, or teacher_tol), then measure the held-out error."""
    cell = plan(session.model, s.solver, nfe=nfe, variable=s.variable, options=s.options)
    level = first_level(session, s)
    while True:
        out = search(session, cell, nfe, level, s)
        error, train = session.level(level).error, out["train_error"]
        if s.teacher_tol is not None or error <= TEACHER_BOUND * train:
            break
        teacher = session.teacher(level)
        if s.teacher_nfe is not None or level + 1 >= TEACHER_LEVELS:
            raise TuningError(
                f"the teacher's measured error {error:.3g} (RMSE against itself at {2 * teacher.nfe} steps) is above "
                f"{TEACHER_BOUND}× the training error reached ({train:.3g}) at NFE {nfe}; pass teacher_nfe="
                f"{2 * teacher.nfe} or more (or leave teacher_nfe out: the teacher then refines itself)")
        warnings.warn(f"NFE {nfe}: the teacher's error {error:.3g} is above {TEACHER_BOUND}× the training error "
                      f"{train:.3g}: tuning again with a teacher of {2 * teacher.nfe} steps", TuningNotice,
                      stacklevel=3)
        level += 1
    return result(session, cell, nfe, level, s, out, shared)


def first_level(session: Session, s: Settings) -> int:
    """Level 0, or with teacher_tol the first level whose measured error reaches it."""
    if s.teacher_tol is None:
        return 0
    for level in range(TEACHER_LEVELS):
        if session.level(level).error <= s.teacher_tol:
            return level
    error = session.level(TEACHER_LEVELS - 1).error
    raise TuningError(f"teacher_tol={s.teacher_tol:g} is not reached: the teacher's error is still {error:.3g} at "
                      f"{session.teacher(TEACHER_LEVELS - 1).nfe} steps; loosen teacher_tol (the network's dtype "
                      f"{session.dtype} limits it), or pass teacher_nfe=")


def search(session: Session, cell: Plan, nfe: int, level: int, s: Settings) -> dict[str, Any]:
    """Starts, refinements and the choice among them, at one teacher level."""
    sched, ledger = session.schedule, session.ledger
    fit = Fit(cell.dynamics, cell.solver, cell.options, Span(sched, cell.steps), s.checkpoint)
    train = Objective(fit, session.train, session.level(level).data, ledger, s.objective, s.trim, session.dim)
    starts: dict[str, Grid] = {}
    if s.method != "refine":
        cost, times = session.costs(level)
        starts["dp"] = grids_mod.custom(sched, times[dp_path(cost, cell.steps)])
    if s.method != "dp":
        starts.update((name, grids_mod.make(name, sched, cell.steps)) for name in STANDARD_GRIDS)
    with ledger.stage_bar(f"NFE {nfe}: starts", len(starts), "grid"):
        sq = {name: _ticked(ledger, train.per_draw, g) for name, g in starts.items()}
    train.calibrate(min(sq.values(), key=lambda v: float(v.sum())))  # the log objective's scale: the best start's
    scored = sorted((train.value_of(v), name) for name, v in sq.items())
    found = [Found("start", starts[scored[0][1]], scored[0][0])]
    stopped = ""
    if s.method != "dp" and cell.steps > 1:
        for f0, name in scored[: s.restarts]:
            params = fit.span.params_of(starts[name], False)
            for stage in ("steps", "steps+eval")[: 1 + s.eval_times]:
                if stage == "steps+eval":
                    params = torch.cat([params, torch.zeros(cell.steps - 1, dtype=F64)])
                best = refine(train, params, f0, s, f"NFE {nfe}: {stage}")
                stopped = stopped or best.stopped
                params, f0 = torch.tensor(best.params, dtype=F64), best.value
                found.append(Found(stage, fit.span.grid(params), best.value))
    pick, val_err = choose(session, fit, found, level, s, nfe)
    return {"found": found, "pick": pick, "start": scored[0][1], "start_value": scored[0][0],
            "validation_error": val_err, "stopped": stopped, "evals": train.evals, "objective": train,
            "train_error": train.rmse(found[pick].grid) if s.objective != "mean" else math.sqrt(found[pick].value)}


def _ticked(ledger: Any, fn: Any, arg: Any) -> Any:
    out = fn(arg)
    ledger.tick()
    return out


def stage_budget(s: Settings, size: int) -> int:
    """Objective evaluations of a refinement stage of `size` parameters: max_evals, else a + b·size with exact
    gradients (AUTOGRAD_EVALS), else FD_EVALS_PER_PARAMETER·size solver runs."""
    if s.max_evals:
        return s.max_evals
    if s.gradient == "autograd" and s.optimizer == "lbfgs":
        return AUTOGRAD_EVALS[0] + AUTOGRAD_EVALS[1] * size
    return FD_EVALS_PER_PARAMETER * size


def refine(objective: Objective, p0: torch.Tensor, f0: float, s: Settings, label: str) -> Best:
    """One refinement stage from p0: L-BFGS-B (exact or finite-difference gradients) or Nelder–Mead."""
    exact = s.gradient == "autograd" and s.optimizer == "lbfgs"
    budget = stage_budget(s, p0.numel())
    ledger, span = objective.ledger, objective.fit.span

    def value(p: torch.Tensor) -> float:
        return _ticked(ledger, objective.value, span.grid(p))

    def value_and_grad(p: torch.Tensor) -> tuple[float, torch.Tensor]:
        return _ticked(ledger, objective.value_and_grad, p)

    with ledger.stage_bar(label, budget, "eval"):
        if s.optimizer == "nelder-mead":
            return nelder_mead(value, p0, f0, budget)
        return lbfgs(value_and_grad if exact else None, value, p0, f0, budget, fd_step(objective))


def fd_step(objective: Objective) -> float:
    """The finite-difference step: 1e-5 on float64 draws, 3e-4 (≈ √ε) on lower precisions."""
    first = next(iter(objective.data.values()), None)
    return 1e-5 if first is None or first.x.dtype == F64 else 3e-4


def choose(session: Session, fit: Fit, found: list[Found], level: int, s: Settings, nfe: int
           ) -> tuple[int, float | None]:
    """(the index of the chosen candidate, its validation error): the smallest objective on validation draws (ties:
    training), or the smallest training objective without validation draws (or past max_seconds)."""
    by_train = min(range(len(found)), key=lambda i: found[i].value)
    if not s.validation_seeds or len(found) < 2:
        return by_train, None
    if session.ledger.out_of_time():
        warnings.warn(f"NFE {nfe}: past max_seconds, the grid is chosen by its training error (no validation)",
                      TuningNotice, stacklevel=4)
        return by_train, None
    pool, data = session.ends(s.validation_seeds, level, "validation")
    val = Objective(fit, pool, data, session.ledger, s.objective, s.trim, session.dim)
    with session.ledger.stage_bar(f"NFE {nfe}: validation", len(found), "grid"):
        scores = [math.sqrt(val.value(f.grid)) for f in found]
    pick = min(range(len(found)), key=lambda i: (scores[i], found[i].value))
    return pick, scores[pick]


def heldout(session: Session, fit: Fit, grids: list[Grid], level: int, s: Settings, nfe: int
            ) -> list[dict[str, float]]:
    """Per grid: RMSE on the held-out draws and the median and 90th percentile of the per-draw relative error."""
    pool, data = session.ends(s.heldout_seeds, level, "held-out")
    obj = Objective(fit, pool, data, session.ledger, "mean", s.trim, session.dim)
    norms = pool.per_draw(lambda c: torch.sum(data[c.index].target.to(F64).flatten(1) ** 2, 1))
    out = []
    with session.ledger.stage_bar(f"NFE {nfe}: held-out", len(grids), "grid"):
        for g in grids:
            sq = obj.per_draw(g)
            rel = torch.sqrt(sq / norms)
            out.append({"rmse": math.sqrt(float(sq.sum()) / (pool.draws * session.dim)),
                        "median": float(rel.median()), "p90": float(torch.quantile(rel, 0.9))})
    return out


def result(session: Session, cell: Plan, nfe: int, level: int, s: Settings, out: dict[str, Any],
           shared: bool) -> TunedGrid:
    """The TunedGrid of one NFE: the chosen grid, its errors and the cost (shared stages counted in every NFE)."""
    found, pick = out["found"], out["pick"]
    best, start = found[pick], found[0]
    fit = out["objective"].fit
    start_train = math.sqrt(start.value) if s.objective == "mean" else out["objective"].rmse(start.grid)
    own = f"NFE {nfe}:"  # this NFE's stages and the shared ones (teachers, DP); held-out draws are not tuning
    cost = session.ledger.totals(
        lambda stage: "held-out" not in stage and (not stage.startswith("NFE ") or stage.startswith(own)))
    held = heldout(session, fit, [best.grid, start.grid], level, s, nfe) if s.heldout_seeds else None
    pool = session.train
    by_stage = {k: pool.count(v) for k, v in sorted(cost["by_stage"].items())}
    teacher = {**session.teacher(level).settings(), "error": session.level(level).error}
    if stopped := out["stopped"]:
        warnings.warn(f"NFE {nfe}: stopped at max_seconds with the best grid so far", TuningNotice, stacklevel=3)
    return TunedGrid(
        grid=Grid(session.schedule, best.grid.t, "tuned", best.grid.t_eval), solver=s.solver.name,
        options=dict(s.options), nfe=nfe, variable=cell.dynamics.variable, problem=session.problem.name,
        fingerprint=session.problem.fingerprint(), train_error=out["train_error"],
        heldout_error=None if held is None else held[0]["rmse"], start=out["start"], start_train_error=start_train,
        start_heldout_error=None if held is None else held[1]["rmse"], cost_nfe=pool.count(cost["calls"]),
        cost_seconds=cost["wall"], cost_cpu_seconds=cost["cpu"], method=s.method, optimizer=s.optimizer,
        decoupled=best.grid.t_eval is not None, chosen=best.stage, validation_error=out["validation_error"],
        validation_seeds=list(s.validation_seeds), n=session.n, train_seeds=list(session.train_seeds),
        heldout_seeds=list(s.heldout_seeds), gradient=s.gradient, objective=s.objective,
        cost_samples=sum(by_stage.values()), cost_vjp_samples=pool.count(cost["vjp"]), cost_by_stage=by_stage,
        shared_cost=shared, teacher=teacher, heldout_median=None if held is None else held[0]["median"],
        heldout_p90=None if held is None else held[0]["p90"], stopped=stopped, evals=out["evals"],
        estimated_samples=session.estimate)

