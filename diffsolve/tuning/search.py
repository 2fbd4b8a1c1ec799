"""One NFE of a tune() call: the starts (DP path, standard grids), the refinement stages, the choice on validation
draws, the teacher's bound, the held-out error and the TunedGrid."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .. import grids as grids_mod
from ..grids import Grid
from ..plan import Plan, plan
from ..schedules import F64
from ..solvers.base import Solver
from .dp import dp_path
from .objective import Fit, Objective, TuningError
from .refine import Best, lbfgs, nelder_mead
from .result import TunedGrid
from .session import Session
from .settings import (
    AUTOGRAD_EVALS,
    EXPECTED_GAIN,
    FD_EVALS_PER_PARAMETER,
    SCHEME_MARGIN,
    STANDARD_GRIDS,
    TEACHER_BOUND,
    TEACHER_LEVELS,
    Settings,
    TuningNotice,
)
from .span import Span
from .teacher import SCHEMES, Teacher


@dataclass
class Found:
    """A candidate of one stage ("start", "steps", "steps+eval"; learning: "weights") — its grid, its solver (None: the
    fit's; a learned one's weights) — and its training objective."""

    stage: str
    grid: Grid
    value: float
    solver: Solver | None = None


def tune_nfe(session: Session, nfe: int, s: Settings, shared: bool) -> TunedGrid:
    """The tuned grid at one NFE (`searched`), its held-out error and cost."""
    cell, teacher, out = searched(session, nfe, s, search)
    return result(session, cell, nfe, teacher, s, out, shared)


Search = Callable[[Session, Fit, int, Teacher, Settings, "dict[str, Any] | None"], "dict[str, Any]"]


def searched(session: Session, nfe: int, s: Settings, searcher: Search) -> tuple[Plan, Teacher, dict[str, Any]]:
    """Search (`searcher`: `search`, or learning's) with the teacher `choose_teacher` picks, then check it against the
    training error reached (≤ 0.1×, or teacher_tol): if above, twice its steps and a new search (automatic teacher)
    or an error (fixed teacher_nfe). Returns (the cell's plan, the teacher, the search's outcome)."""
    cell = plan(session.model, s.solver, nfe=nfe, variable=s.variable, options=s.options)
    fit = Fit(cell.dynamics, cell.solver, cell.options, Span(session.schedule, cell.steps), s.checkpoint)
    # every rank enters the stage (costs are reduced over the ranks by stage name)
    with session.ledger.stage_bar(f"NFE {nfe}: teacher choice", TEACHER_LEVELS, "level"):
        teacher, tries = choose_teacher(session, s, fit), 0
    out = None
    while True:
        out = searcher(session, fit, nfe, teacher, s, out)
        error, train = session.error(teacher), out["train_error"]
        if s.teacher_tol is not None or error <= TEACHER_BOUND * train:
            break
        if s.teacher_nfe is not None or tries + 1 >= TEACHER_LEVELS:
            raise TuningError(
                f"the teacher's measured error {error:.3g} (RMSE against itself at {2 * teacher.nfe} steps) is above "
                f"{TEACHER_BOUND}× the training error reached ({train:.3g}) at NFE {nfe}; pass teacher_nfe="
                f"{2 * teacher.nfe} or more (or leave teacher_nfe out: the teacher then refines itself)")
        warnings.warn(f"NFE {nfe}: the teacher's error {error:.3g} is above {TEACHER_BOUND}× the training error "
                      f"{train:.3g}: refining further against a teacher of {2 * teacher.nfe} steps", TuningNotice,
                      stacklevel=3)
        teacher, tries = teacher.finer(), tries + 1
    return cell, teacher, out


def choose_teacher(session: Session, s: Settings, fit: Fit) -> Teacher:
    """Level by level (N_0·2^L steps), the more accurate scheme on the subset, at the first level where it is
    accurate enough: for a fixed teacher_nfe level 0; with teacher_tol an error ≤ teacher_tol; else an error ≤ 0.1×
    the training error the tuning is expected to reach (the best start's error on the subset — the standard grids and
    the DP grid along the subset's own teacher — over EXPECTED_GAIN), so that the full teacher is solved once."""
    ladders = [session.ladder(scheme) for scheme in range(len(SCHEMES))]
    grids = [grids_mod.make(name, session.schedule, fit.span.steps) for name in STANDARD_GRIDS]
    for level in range(1 if s.teacher_nfe is not None else TEACHER_LEVELS):
        errors = sorted((session.error(ladder[level]), ladder[level].scheme) for ladder in ladders)
        error, best = errors[0]
        teacher = session.ladder(best)[level]
        # a scheme SCHEME_MARGIN× less accurate than the best is not measured at the finer levels
        ladders = [session.ladder(k) for e, k in errors if e <= SCHEME_MARGIN * error]
        if s.teacher_nfe is not None:
            if s.teacher_tol is not None and error > s.teacher_tol:
                raise TuningError(f"teacher_nfe={s.teacher_nfe} does not reach teacher_tol={s.teacher_tol:g}: the "
                                  f"teacher's measured error is {error:.3g}; raise teacher_nfe, loosen teacher_tol, "
                                  f"or give only one of them (teacher_tol alone refines the teacher until it holds)")
            return teacher
        if s.teacher_tol is not None:
            bound = s.teacher_tol
        else:
            cost, times = session.subset_costs(teacher.finer())
            dp = [grids_mod.custom(session.schedule, times[dp_path(cost, fit.span.steps)])] if s.method != "refine" \
                else []
            start = min(session.subset_rmse(lambda x, g=g: fit.end(g, x), teacher.finer()) for g in grids + dp)
            bound = TEACHER_BOUND * start / EXPECTED_GAIN
        if error <= bound:
            return teacher
        session.ledger.tick()
    if s.teacher_tol is None:
        return teacher
    raise TuningError(f"teacher_tol={s.teacher_tol:g} is not reached: the teacher's error is still {error:.3g} at "
                      f"{teacher.nfe} steps; loosen teacher_tol (the network's dtype {session.dtype} limits it), or "
                      f"pass teacher_nfe=")


def search(session: Session, fit: Fit, nfe: int, teacher: Teacher, s: Settings,
           again: dict[str, Any] | None = None) -> dict[str, Any]:
    """Starts, refinements and the choice among them, against one teacher. `again`: the outcome of a search with a
    teacher found too coarse; this one then scores its start and refines its choice further (half the budget)."""
    ledger = session.ledger
    train = Objective(fit, session.train, session.level(teacher).data, ledger, s.objective, s.trim, session.dim)
    starts = _starts(session, fit, teacher, s) if again is None else {again["start"]: again["found"][0].grid}
    with ledger.stage_bar(f"NFE {nfe}: starts", len(starts), "grid"):
        sq = {name: _ticked(ledger, train.per_draw, g) for name, g in starts.items()}
    train.calibrate(min(sq.values(), key=lambda v: float(v.sum())))  # the log objective's scale: the best start's
    scored = sorted((train.value_of(v), name) for name, v in sq.items())
    found = [Found("start", starts[scored[0][1]], scored[0][0])]
    stopped = ""
    if s.method != "dp" and fit.span.steps > 1:
        stages = ("steps", "steps+eval")[: 1 + s.eval_times]
        origins = [(starts[name], f0, stages, 1.0) for f0, name in scored[: s.restarts]]
        if again is not None and (prior := again["found"][again["pick"]]).stage != "start":
            prior = Found(prior.stage, prior.grid, train.value(prior.grid))
            found.append(prior)
            origins = [(prior.grid, prior.value, stages[stages.index(prior.stage):], 0.5)]
        for grid, f0, todo, scale in origins:
            more, why = refine_stages(train, grid, f0, todo, scale, s, nfe)
            found += more
            stopped = stopped or why
    pick, val_err = choose(session, fit, found, teacher, s, nfe)
    return {"found": found, "pick": pick, "start": scored[0][1], "start_value": scored[0][0],
            "validation_error": val_err, "stopped": stopped, "evals": train.evals, "objective": train,
            "train_error": train.rmse(found[pick].grid) if s.objective != "mean" else math.sqrt(found[pick].value)}


def _starts(session: Session, fit: Fit, teacher: Teacher, s: Settings) -> dict[str, Grid]:
    """The DP grid along the teacher and the standard grids (as the method asks)."""
    sched, steps = session.schedule, fit.span.steps
    starts: dict[str, Grid] = {}
    if s.method != "refine":
        cost, times = session.costs(teacher)
        starts["dp"] = grids_mod.custom(sched, times[dp_path(cost, steps)])
    if s.method != "dp":
        starts.update((name, grids_mod.make(name, sched, steps)) for name in STANDARD_GRIDS)
    return starts


def refine_stages(train: Objective, grid: Grid, f0: float, stages: tuple[str, ...], scale: float, s: Settings,
                  nfe: int) -> tuple[list[Found], str]:
    """The refinement stages from `grid` in turn (each from the last one's best), each with `scale` × its budget
    plus what the one before left: (a Found per stage, why it stopped early or "")."""
    steps = train.fit.span.steps
    params, spare, out, stopped = train.fit.span.params_of(grid, grid.t_eval is not None), 0, [], ""
    for stage in stages:
        if stage == "steps+eval" and params.numel() == steps - 1:
            params = torch.cat([params, torch.zeros(steps - 1, dtype=F64)])
        budget = max(1, int(scale * stage_budget(s, params.numel()))) + spare
        best = refine(train, params, f0, s, f"NFE {nfe}: {stage}", budget)
        spare, stopped = budget - best.evals, stopped or best.stopped
        params, f0 = torch.tensor(best.params, dtype=F64), best.value
        out.append(Found(stage, train.fit.span.grid(params), best.value))
    return out, stopped


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


def refine(objective: Objective, p0: torch.Tensor, f0: float, s: Settings, label: str, budget: int) -> Best:
    """One refinement stage from p0 within `budget` evaluations: L-BFGS-B (exact or finite-difference gradients;
    a stage whose line search stalls ends early) or Nelder–Mead."""
    exact = s.gradient == "autograd" and s.optimizer == "lbfgs"
    ledger = objective.ledger

    def value(p: torch.Tensor) -> float:
        return _ticked(ledger, objective.value_at, p)

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


def choose(session: Session, fit: Fit, found: list[Found], teacher: Teacher, s: Settings, nfe: int,
           strict: bool = False) -> tuple[int, float | None]:
    """(the index of the chosen candidate, its validation error). On validation draws, the most refined candidate
    (start < steps < steps+eval) whose objective is not worse than the best candidate's by more than two standard
    errors of the paired per-draw differences: on multimodal data a single draw that ends in another mode can
    decide a plain comparison of a few hundred draws, while a systematic loss shows in every draw. `strict`: the
    candidate with the smallest validation objective (a learned solver must beat the grid it starts from). Without
    validation draws (or past max_seconds), the smallest training objective."""
    by_train = min(range(len(found)), key=lambda i: found[i].value)
    if not s.validation_seeds or len(found) < 2:
        return by_train, None
    if session.ledger.out_of_time():
        warnings.warn(f"NFE {nfe}: past max_seconds, the grid is chosen by its training error (no validation)",
                      TuningNotice, stacklevel=5)
        return by_train, None
    pool, data = session.ends(s.validation_seeds, teacher, "validation", validation_draws(session.n))
    val = Objective(fit, pool, data, session.ledger, s.objective, s.trim, session.dim)
    with session.ledger.stage_bar(f"NFE {nfe}: validation", len(found), "grid"):
        sq = [_ticked(session.ledger, lambda f: val.per_draw(f.grid, f.solver), f) for f in found]
    val.calibrate(sq[0])
    losses = [val.losses(v) for v in sq]
    best = min(range(len(found)), key=lambda i: (float(losses[i].mean()), found[i].value))
    pick = best if strict else next(i for i in reversed(range(len(found))) if not _worse(losses[i], losses[best]))
    return pick, math.sqrt(float(sq[pick].mean()) / session.dim)


def validation_draws(n: int) -> int:
    """Validation draws per seed: half the training ones (the paired comparison needs fewer; the teacher costs)."""
    return max(1, n // 2)


def _worse(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether per-draw losses `a` are worse than `b` by more than two standard errors of their paired difference."""
    d = a - b
    return bool(d.mean() > 2.0 * d.std() / math.sqrt(d.numel())) if d.numel() > 1 else bool(d.mean() > 0)


def heldout(session: Session, fit: Fit, grids: list[Grid], teacher: Teacher, s: Settings, nfe: int,
            solvers: list[Solver | None] | None = None) -> list[dict[str, float]]:
    """Per grid (and solver: default the fit's): RMSE on the held-out draws and the median and 90th percentile of the
    per-draw relative error."""
    pool, data = session.ends(s.heldout_seeds, teacher, "held-out")
    obj = Objective(fit, pool, data, session.ledger, "mean", s.trim, session.dim)
    norms = pool.per_draw(lambda c: torch.sum(data[c.index].target.to(F64).flatten(1) ** 2, 1))
    out = []
    with session.ledger.stage_bar(f"NFE {nfe}: held-out", len(grids), "grid"):
        for g, solver in zip(grids, solvers or [None] * len(grids)):
            sq = obj.per_draw(g, solver)
            rel = torch.sqrt(sq / norms)
            out.append({"rmse": math.sqrt(float(sq.sum()) / (pool.draws * session.dim)),
                        "median": float(rel.median()), "p90": float(torch.quantile(rel, 0.9))})
    return out


def spent(session: Session, nfe: int) -> dict[str, Any]:
    """What this NFE cost, every rank's: its own stages and the shared ones (teachers, DP; held-out draws are not
    tuning) — model calls, forward sample-evaluations (total and by stage), backward ones, wall and CPU seconds."""
    own = f"NFE {nfe}:"
    cost = session.ledger.totals(
        lambda stage: "held-out" not in stage and (not stage.startswith("NFE ") or stage.startswith(own)))
    pool = session.train
    by_stage = {k: pool.count(v) for k, v in sorted(cost["by_stage"].items())}
    return {**cost, "calls": pool.count(cost["calls"]), "vjp": pool.count(cost["vjp"]), "by_stage": by_stage,
            "samples": sum(by_stage.values())}


def result(session: Session, cell: Plan, nfe: int, teacher: Teacher, s: Settings, out: dict[str, Any],
           shared: bool) -> TunedGrid:
    """The TunedGrid of one NFE: the chosen grid, its errors and the cost (shared stages counted in every NFE)."""
    found, pick = out["found"], out["pick"]
    best, start = found[pick], found[0]
    fit = out["objective"].fit
    start_train = math.sqrt(start.value) if s.objective == "mean" else out["objective"].rmse(start.grid)
    cost = spent(session, nfe)
    held = heldout(session, fit, [best.grid, start.grid], teacher, s, nfe) if s.heldout_seeds else None
    by_stage = cost["by_stage"]
    teacher_info = {**teacher.settings(), "error": session.error(teacher)}
    if stopped := out["stopped"]:
        warnings.warn(f"NFE {nfe}: stopped at max_seconds with the best grid so far", TuningNotice, stacklevel=4)
    return TunedGrid(
        grid=Grid(session.schedule, best.grid.t, "tuned", best.grid.t_eval), solver=s.solver.name,
        options=dict(s.options), nfe=nfe, variable=cell.dynamics.variable, problem=session.problem.name,
        fingerprint=session.problem.fingerprint(), train_error=out["train_error"],
        heldout_error=None if held is None else held[0]["rmse"], start=out["start"], start_train_error=start_train,
        start_heldout_error=None if held is None else held[1]["rmse"], cost_nfe=cost["calls"],
        cost_seconds=cost["wall"], cost_cpu_seconds=cost["cpu"], method=s.method, optimizer=s.optimizer,
        decoupled=best.grid.t_eval is not None, chosen=best.stage, validation_error=out["validation_error"],
        validation_seeds=list(s.validation_seeds), n=session.n, train_seeds=list(session.train_seeds),
        heldout_seeds=list(s.heldout_seeds), gradient=s.gradient, objective=s.objective,
        cost_samples=cost["samples"], cost_vjp_samples=cost["vjp"], cost_by_stage=by_stage,
        cpu_by_stage=cost["cpu_by_stage"],
        shared_cost=shared, teacher=teacher_info, heldout_median=None if held is None else held[0]["median"],
        heldout_p90=None if held is None else held[0]["p90"], stopped=stopped, evals=out["evals"],
        estimated_samples=session.estimate)

