"""tune(): step grids tuned to a model and a solver at one or more NFEs (the package's doc says how)."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..devices import check_device
from ..errors import DiffsolveError
from ..models import Model
from ..plan import plan
from ..problems import Problem
from ..problems import resolve as resolve_problem
from ..schedules import Schedule
from ..solvers.learned import LearnedSolver
from .learning import learn_nfe
from .ledger import Ledger
from .objective import TuningError, autograd_problem, frozen_weights
from .result import TunedGrid
from .search import stage_budget, tune_nfe, validation_draws
from .session import Session
from .settings import DEFAULTS, LEARN_OBJECTIVE, STANDARD_GRIDS, Settings, TuningNotice, make_settings
from .span import Span
from .teacher import CHECK_DRAWS, TeacherCache, default_cache_dir
from .weights import WeightSpan


def tune(
    problem: Problem | Model | str,
    solver: str,
    nfe: int | Sequence[int],
    *,
    train_seeds: Sequence[int] = DEFAULTS["train_seeds"],
    heldout_seeds: Sequence[int] | None = DEFAULTS["heldout_seeds"],
    validation_seeds: Sequence[int] | None = None,
    n: int = DEFAULTS["n"],
    variable: str | None = None,
    schedule: Schedule | None = None,
    candidates: int = DEFAULTS["candidates"],
    teacher_nfe: int | None = None,
    teacher_tol: float | None = None,
    max_evals: int | None = None,
    method: str = "dp+refine",
    restarts: int = 1,
    eval_times: bool | None = None,
    optimizer: str = "lbfgs",
    gradient: str = "auto",
    objective: str = DEFAULTS["objective"],
    trim: float = DEFAULTS["trim"],
    max_seconds: float | None = None,
    batch_size: int = DEFAULTS["batch_size"],
    cache_dir: str | Path | None | bool = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    checkpoint: bool = False,
    progress: bool = True,
    shape: tuple[int, ...] | None = None,
    learn: bool = False,
    conditions: int = 1,
    learn_objective: str = LEARN_OBJECTIVE,
    **solver_options: Any,
) -> TunedGrid | list[TunedGrid] | LearnedSolver | list[LearnedSolver]:
    """A grid minimising `solver`'s error at `nfe` (or one grid per NFE of a list) to a teacher on training draws.

    See the package doc for the method. `problem`: a name, a Problem or a Model (`shape=` for a Model without one).
    Draws: n per seed of `train_seeds` (tuning), n/2 of `validation_seeds` (choosing among start and refinements;
    default each training seed + 7919; [] chooses by training error) and n of `heldout_seeds` (reported only; None
    for none). Teacher: `teacher_nfe` fixes its steps (default (candidates − 1)·2^L, the level L chosen so that
    its measured error is ≤ 0.1× the training error reached), `teacher_tol` the RMSE it must reach; cached in
    `cache_dir` (default $DIFFSOLVE_CACHE or ~/.cache/diffsolve/teachers; False: no cache). `gradient`: "auto"
    (autograd through the solver where the network allows it, else finite differences, with a notice),
    "autograd" or "fd"; `max_evals` objective evaluations per refinement stage; `objective`: "mean" (MSE, the
    default by held-out measurement), "trimmed" (without the worst `trim` of the draws) or "log"; `max_seconds`
    stops at the best grid so far; `batch_size` draws per chunk (the unit of work and of data-parallel dealing
    under torchrun); `dtype`/`device`: the network's by default;
    `checkpoint` recomputes each network call in the backward pass (memory); `progress`: bars on stderr.
    `learn`: one more stage learns the solver's weights with the grid (learning.py; `conditions`: 1 keeps each step
    consistent, 2 also the base weights' first moment; `learn_objective` its objective, and the choice's between the
    learned solver and the tuned grid) and returns a LearnedSolver (see `learn`).
    Returns a TunedGrid, or a list of them for a list of NFEs (teacher and DP shared).
    """
    nfes = _nfes(nfe)
    s = make_settings(solver, method, restarts, eval_times, optimizer, gradient, objective, trim, max_evals,
                      checkpoint, teacher_nfe, teacher_tol, variable, list(train_seeds), heldout_seeds,
                      validation_seeds, solver_options, learn, conditions, learn_objective)
    session = _open(problem, nfes, s, list(train_seeds), n, schedule, candidates, max_seconds, batch_size,
                    cache_dir, dtype, device, progress, shape)
    try:
        with frozen_weights(session.model.net), torch.no_grad():
            s = _gradient_mode(session, s)
            session.estimate = _estimate(session, s, nfes)
            out = []
            one = learn_nfe if s.learn else tune_nfe
            for k in nfes:  # (a loop, not a comprehension: the notices' stack levels point at the caller of tune)
                out.append(one(session, k, s, shared=len(nfes) > 1))
    finally:  # a process group tune joined is left here (one the caller made stays the caller's)
        distributed.stop(session.rank)
    return out if not isinstance(nfe, int) else out[0]


def _nfes(nfe: int | Sequence[int]) -> list[int]:
    single = isinstance(nfe, int) and not isinstance(nfe, bool)
    values = [nfe] if single else list(nfe) if isinstance(nfe, (list, tuple)) else []
    if not values or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in values) \
            or len(set(values)) != len(values):
        raise DiffsolveError(f"nfe must be a positive integer or a list of distinct ones, got {nfe!r}; "
                             f"e.g. nfe=6 or nfe=[5, 6, 8, 10]")
    return values  # type: ignore[return-value]


def _open(problem: Problem | Model | str, nfes: list[int], s: Settings, train: list[int], n: int,
          schedule: Schedule | None, candidates: int, max_seconds: float | None, batch_size: int,
          cache_dir: str | Path | None | bool, dtype: torch.dtype | None, device: str | torch.device | None,
          progress: bool, shape: tuple[int, ...] | None) -> Session:
    """The session: the problem's model in the network's dtype on its device, ranks, cache and ledger."""
    for label, value, low in (("n", n, 1), ("candidates", candidates, 3), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DiffsolveError(f"{label} must be an integer >= {low}, got {value!r}")
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise DiffsolveError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
    prob = resolve_problem(problem, shape=shape)
    sched = schedule or prob.default_schedule()
    dtype = dtype or prob.network_dtype()
    model = prob.model(sched, dtype=dtype)
    params = list(model.net.parameters()) if isinstance(model.net, nn.Module) else []
    dev = check_device(device) if device is not None else (params[0].device if params else torch.device("cpu"))
    if params and any(p.device != dev for p in params):
        model.net.to(dev)
    for k in nfes:  # every budget and option checked before any work
        steps = plan(model, s.solver, nfe=k, variable=s.variable, options=s.options).steps
        if s.method != "refine" and steps >= candidates:
            raise DiffsolveError(f"candidates={candidates} DP candidate times cannot hold a grid of {steps} steps "
                                 f"(NFE {k}); pass candidates={max(64, 2 * steps)} or more, or method='refine'")
    rank = distributed.start() if distributed.from_env().group else distributed.Rank()
    if not isinstance(cache_dir, (bool, str, os.PathLike)) and cache_dir is not None:
        raise DiffsolveError(f"cache_dir must be a folder (a str or a Path), True (the default folder) or False (no "
                             f"cache), got {cache_dir!r} ({type(cache_dir).__name__})")
    folder = None if cache_dir is False else default_cache_dir() if cache_dir in (None, True) else Path(cache_dir)
    cache = TeacherCache(folder, {"fingerprint": prob.fingerprint(), "schedule": sched.to_config(), "version": 1})
    label = f"tune {s.solver.name} NFE {','.join(map(str, nfes))}" + (f" [{rank.label}]" if rank.world > 1 else "")
    ledger = Ledger(model, progress, max_seconds, label)
    return Session(prob, sched, model, dtype, dev, rank, ledger, cache, n, batch_size, candidates,
                   s.teacher_nfe or candidates - 1, train, dim=prob.dim or 1)


def _gradient_mode(session: Session, s: Settings) -> Settings:
    """"auto" → "autograd" where the network differentiates through its inputs, else "fd" with a notice."""
    if s.gradient == "fd" or s.optimizer == "nelder-mead" or s.method == "dp":
        return s if s.gradient != "auto" else replace(s, gradient="fd" if s.method != "dp" else "")
    x = session.x_T(session.train.chunks[0])
    why = session.ledger.run(2, lambda: autograd_problem(session.model, x))
    if why is None:
        return replace(s, gradient="autograd")
    if s.gradient == "autograd":
        raise TuningError(f"gradient='autograd' is not possible: the network does not support autograd through "
                          f"its inputs ({why}); pass gradient='fd' (finite differences) or leave gradient='auto'")
    warnings.warn(f"the network does not support autograd through its inputs ({why}): tuning uses finite-"
                  f"difference gradients instead (P + 1 solves per gradient, P parameters)", TuningNotice,
                  stacklevel=3)
    return replace(s, gradient="fd")


def _estimate(session: Session, s: Settings, nfes: list[int]) -> int:
    """Print the expected cost before the work (sample-evaluations and seconds, from one timed network call) and
    refuse a max_seconds that the fixed stages (teachers, starts, validation) cannot meet. Returns the forward
    sample-evaluations expected."""
    ledger, first = session.ledger, session.train.chunks[0]
    x = session.x_T(first)
    point = session.ladder(0)[0].grid(session.schedule).points[1]
    ledger.run(first.size, lambda: session.model.eps_at(x, point))  # the first call warms up
    clock = time.perf_counter()
    ledger.run(first.size, lambda: session.model.eps_at(x, point).sum().item())  # (.item(): a GPU finishes it)
    per = (time.perf_counter() - clock) / first.size
    teacher = session.ladder(0)[0 if s.teacher_nfe is not None else 1]  # the level usually chosen
    fixed = _teacher_cost(session, session.train, teacher, True)
    if s.validation_seeds and s.method != "dp":
        fixed += _teacher_cost(session, session.pool(s.validation_seeds, validation_draws(session.n)), teacher, False)
    search = backward = 0
    for k in nfes:
        steps = plan(session.model, s.solver, nfe=k, variable=s.variable, options=s.options).steps
        nfe_draws = k * session.train.draws
        fixed += (1 + (len(STANDARD_GRIDS) if s.method != "dp" else 0)) * nfe_draws
        if s.method != "dp" and steps > 1:
            sizes = [steps - 1] + ([2 * (steps - 1)] if s.eval_times else [])
            if s.learn:
                sizes.append(WeightSpan.of(Span(session.schedule, steps), s.solver, s.options, s.eval_times,
                                           s.conditions).size())
            evals = s.restarts * sum(stage_budget(s, size) for size in sizes)
            search += evals * nfe_draws * (2 if s.objective == "trimmed" and s.gradient != "autograd" else 1)
            backward += evals * nfe_draws if s.gradient == "autograd" else 0
            val = session.pool(s.validation_seeds, validation_draws(session.n)).draws if s.validation_seeds else 0
            fixed += (1 + len(sizes)) * k * val
    seconds_fixed, seconds = fixed * per, (fixed + search + 2 * backward) * per
    ledger.say(f"expected cost: about {fixed + search:,} forward sample-evaluations (teachers of {teacher.nfe} "
               f"steps and fixed stages {fixed:,}, refinement {search:,}) and {backward:,} backward; "
               f"~{seconds:.0f} s at {per * 1e6:.3g} µs per sample-evaluation")
    if ledger.max_seconds is not None and seconds_fixed > ledger.max_seconds:
        raise TuningError(
            f"max_seconds={ledger.max_seconds:g} cannot be met: the teacher and the fixed stages alone "
            f"need about {seconds_fixed:.0f} s ({fixed:,} sample-evaluations at {per * 1e6:.3g} µs each); raise "
            f"max_seconds, or lower n, candidates or teacher_nfe")
    return fixed + search


def _teacher_cost(session: Session, pool: Any, teacher: Any, record: bool) -> int:
    """Sample-evaluations the teacher still needs on a pool's draws (cached chunks cost nothing)."""
    total = 0
    for c in pool.chunks:
        path = session.cache.path(session.key(c, teacher, record))
        if path is None or not path.exists():
            total += teacher.nfe * c.size
    if record:  # the subset that measures the teachers' errors: two schemes at levels 0, 1, 2
        total += 2 * (teacher.nfe // 2) * 7 * min(CHECK_DRAWS, pool.chunks[0].size)
    return total


def learn(problem: Problem | Model | str, solver: str, nfe: int | Sequence[int], *,
          objective: str = LEARN_OBJECTIVE, grid_objective: str = DEFAULTS["objective"],
          **kwargs: Any) -> LearnedSolver | list[LearnedSolver]:
    """A solver whose weights are learned for `problem` (a name, a Problem or a Model) at `nfe`, with its grid:
    `tune(…, learn=True)` (the same other arguments; `conditions=` 1 or 2). The grid is tuned as `tune` does (with
    `grid_objective`, tune's default), then the step times, evaluation times and every step's weights on the stored
    outputs (each step kept consistent) are learned together on the training draws with `objective` ("log" by
    default: MSE-like below the 95th percentile of the start's per-draw error, logarithmic above, so that the few draws
    that end in another mode do not steer the weights); validation draws choose between the learned solver and the
    tuned grid it started from (the learned one only when its `objective` is the smaller); held-out draws report
    both. Returns a LearnedSolver (`.save(path)`, then `solver="file:PATH"` wherever a solver is named), or a list
    of them for a list of NFEs. The default objective is measured (benchmarks/RESULTS.md, "Learned solvers")."""
    return tune(problem, solver, nfe, objective=grid_objective, learn=True,  # type: ignore[return-value]
                learn_objective=objective, **kwargs)
