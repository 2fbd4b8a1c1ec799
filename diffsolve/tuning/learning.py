"""Learned solvers (docs/design.md §11): the tuner's search, then one more stage that learns the solver's weights.

After the grid stages (search.py, with tune's objective) and their choice on validation draws — the tuned grid, the
one `tune` finds — the "weights" stage refines, from that grid and the base method's own weights (Δ = 0), the grid's
step logits, its evaluation shifts and every combination's Δ together (weights.py; diffsolve.solvers.exp.learned:
w = w⁰ + f·P Δ, each step consistent), by the same L-BFGS-B with gradients by autograd through the solver, on the
learning objective (Settings.learn_objective, "log" by default) and within LEARN_SHARE of what the tuning spent. The
learned solver is a candidate beside the tuned grid it started from: on validation draws, the one with the smaller
learning objective is kept; a tuned grid kept is saved as a learned solver with Δ = 0 (the base method on that
grid). The held-out draws report both.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import Any

import torch

from ..grids import Grid
from ..plan import Plan
from ..schedules import F64
from ..solvers.exp.learned import LearnedMultistep
from ..solvers.learned import LearnedSolver, network_fingerprint
from .objective import Fit, Objective
from .search import Found, choose, heldout, refine, search, searched, spent, stage_budget
from .session import Session
from .settings import Settings, TuningNotice
from .teacher import Teacher
from .weights import WeightSpan

WEIGHTS = "weights"
# The weights stage spends at most this share of what the tuning spent before it (forward sample-evaluations, teacher
# included), so that learning costs ≤ (1 + LEARN_SHARE)× tuning the grid plus the choice's validation (issue 24: ≤ 2×).
LEARN_SHARE = 0.85


def learn_nfe(session: Session, nfe: int, s: Settings, shared: bool) -> LearnedSolver:
    """The learned solver at one NFE (search, then the weights stage, against a sufficient teacher), its held-out
    errors beside the tuned grid's, and its cost."""
    cell, teacher, out = searched(session, nfe, s, learn_search)
    return learned_result(session, cell, nfe, teacher, s, out, shared)


def learn_search(session: Session, fit: Fit, nfe: int, teacher: Teacher, s: Settings,
                 again: dict[str, Any] | None = None) -> dict[str, Any]:
    """`search` (the tuned grid, chosen on validation draws), the weights stage from it, and the choice between the
    two on validation draws. `again`: the outcome of a search against a teacher found too coarse (its learned solver,
    if chosen, is refined further)."""
    grids_again = None if again is None else {**again, "found": again["found"][: again["grids"]],
                                              "pick": again["grid_pick"]}
    out = search(session, fit, nfe, teacher, s, grids_again)
    found, grid_pick, train = out["found"], out["pick"], out["objective"]
    prior = None if again is None else again["found"][again["pick"]]
    affordable = int(LEARN_SHARE * spent(session, nfe)["samples"] / (session.train.draws * nfe))
    ls = replace(s, objective=s.learn_objective)  # the weights stage's and the choice's objective
    learned, stopped, evals = weights_stage(train, found[grid_pick],
                                            prior if prior and prior.stage == WEIGHTS else None, ls, nfe, affordable)
    two, val_err = choose(session, fit, [found[grid_pick], learned], teacher, ls, nfe, strict=True)
    chosen = found[grid_pick] if two == 0 else learned
    rmse = out["train_error"] if two == 0 else train.rmse(chosen.grid, chosen.solver)
    return {**out, "found": found + [learned], "grids": len(found), "grid_pick": grid_pick,
            "pick": grid_pick if two == 0 else len(found), "grid_validation_error": out["validation_error"],
            "validation_error": val_err, "stopped": out["stopped"] or stopped, "train_error": rmse,
            "grid_train_error": out["train_error"], "evals": out["evals"] + evals}


def weights_stage(train: Objective, start: Found, prior: Found | None, s: Settings, nfe: int, affordable: int
                  ) -> tuple[Found, str, int]:
    """Refine the grid and the weights together from `start` (Δ = 0), or from a learned `prior` (half the budget),
    within the tuner's stage budget and at most `affordable` evaluations (LEARN_SHARE of the tuning's cost; max_evals
    overrides both): (the learned candidate, why it stopped early or "", the objective evaluations)."""
    fit = train.fit
    wspan = WeightSpan.of(fit.span, fit.solver, fit.options, s.eval_times, s.conditions)
    obj = Objective(replace(fit, span=wspan), train.pool, train.data, train.ledger, s.objective, s.trim, train.dim)
    origin = prior or start
    p0 = wspan.params_of(origin.grid, origin.solver)
    if s.objective == train.kind:
        obj.scale = train.scale
        f0 = start.value if prior is None else obj.value(prior.grid, prior.solver)
    else:  # the learning objective on the start (the log objective's scale from its per-draw errors)
        sq = obj.per_draw(start.grid, start.solver)
        obj.calibrate(sq)
        f0 = obj.value_of(sq) if prior is None else obj.value(prior.grid, prior.solver)
    budget = stage_budget(s, p0.numel()) if s.max_evals else min(stage_budget(s, p0.numel()), affordable)
    budget = max(1, int((1.0 if prior is None else 0.5) * budget))
    best = refine(obj, p0, f0, s, f"NFE {nfe}: {WEIGHTS}", budget)
    params = torch.tensor(best.params, dtype=F64)
    return Found(WEIGHTS, wspan.grid(params), best.value, wspan.solver(params)), best.stopped, obj.evals


def learned_result(session: Session, cell: Plan, nfe: int, teacher: Teacher, s: Settings, out: dict[str, Any],
                   shared: bool) -> LearnedSolver:
    """The LearnedSolver of one NFE: the chosen candidate (the learned weights, or the tuned grid with Δ = 0), the
    errors of it, of the learned candidate and of the tuned grid, and the cost (shared stages counted in every NFE)."""
    found, train = out["found"], out["objective"]
    chosen, tuned, learned, start = found[out["pick"]], found[out["grid_pick"]], found[-1], found[0]
    fit = train.fit
    cost = spent(session, nfe)
    held = heldout(session, fit, [chosen.grid, tuned.grid, learned.grid], teacher, s, nfe,
                   [chosen.solver, None, learned.solver]) if s.heldout_seeds else [None, None, None]
    solver = chosen.solver if isinstance(chosen.solver, LearnedMultistep) else LearnedMultistep(
        s.solver, s.options, None, s.conditions)

    def rmse(f: Found) -> float:  # (a learned candidate's value is of the learning objective)
        return math.sqrt(f.value) if s.objective == "mean" and f.stage != WEIGHTS else train.rmse(f.grid, f.solver)
    errors = {"train": out["train_error"], "validation": out["validation_error"], "heldout": held[0],
              "learned": {"train": rmse(learned), "heldout": held[2]},
              "tuned": {"stage": tuned.stage, "train": out["grid_train_error"],
                        "validation": out["grid_validation_error"], "heldout": held[1]},
              "start": {"grid": out["start"], "train": rmse(start)}}
    if out["stopped"]:
        warnings.warn(f"NFE {nfe}: stopped at max_seconds with the best solver so far", TuningNotice, stacklevel=4)
    return LearnedSolver(
        solver=solver, grid=Grid(session.schedule, chosen.grid.t, "learned", chosen.grid.t_eval), nfe=nfe,
        variable=cell.dynamics.variable, fingerprint=session.problem.fingerprint(),
        network=network_fingerprint(session.model.net), problem=session.problem.name, chosen=chosen.stage,
        errors=errors,
        cost={"samples": cost["samples"], "vjp_samples": cost["vjp"], "nfe": cost["calls"], "seconds": cost["wall"],
              "cpu_seconds": cost["cpu"], "by_stage": cost["by_stage"], "cpu_by_stage": cost["cpu_by_stage"],
              "estimated_samples": session.estimate, "shared": shared},
        learning={"objective": s.learn_objective, "grid_objective": s.objective, "trim": s.trim,
                  "conditions": s.conditions, "n": session.n,
                  "train_seeds": list(session.train_seeds), "validation_seeds": list(s.validation_seeds),
                  "heldout_seeds": list(s.heldout_seeds), "teacher": {**teacher.settings(),
                                                                      "error": session.error(teacher)},
                  "method": s.method, "optimizer": s.optimizer, "gradient": s.gradient, "evals": out["evals"],
                  "stopped": out["stopped"]},
        tuned_grid=Grid(session.schedule, tuned.grid.t, "tuned", tuned.grid.t_eval))
