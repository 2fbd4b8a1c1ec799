"""The tuning objective on training draws, its gradient by autograd through the solver, and the checks around it.

Per draw i, r_i = ‖x_K(grid; x_T,i) − x*_i‖² / d against the teacher's end state x*_i. The objective is their mean
(the MSE; its root is the RMSE reported), or a robust one — "trimmed", the mean of the smallest (1 − trim)
fraction, or "log", the mean of c·log(1 + r_i/c) — so that a few draws on a mode boundary cannot steer the grid.
Its gradient in the grid's parameters (span.py) is one backward pass per chunk through the differentiable solve
(diffsolve.solvers.exp.weighted), the network's weights frozen; chunks are reduced in order over the ranks
(draws.py). A network without autograd gets finite differences instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..dynamics import Dynamics
from ..errors import DiffsolveError
from ..grids import Grid
from ..models import Model
from ..points import differentiable_points
from ..schedules import F64
from ..solve import solve
from ..solvers.base import Solver
from ..solvers.exp.weighted import solve_weighted
from .draws import Chunk, Pool
from .ledger import Ledger

OBJECTIVES = ("mean", "trimmed", "log")


class TuningError(DiffsolveError):
    """Tuning cannot go on: a non-finite gradient, a teacher above its bound, a budget that cannot be met."""


@dataclass
class Batch:
    """One chunk's draws on the device (the network's dtype) and the teacher's end states."""

    x: Tensor
    target: Tensor


@dataclass
class Fit:
    """What the objective solves: `solver` with `options` on `dynamics`, on the grids of `span`."""

    dynamics: Dynamics
    solver: Solver
    options: dict[str, Any]
    span: Any  # Span (a grid's parameters) or weights.WeightSpan (a grid's and a learned solver's weights)
    checkpoint: bool = False

    def end(self, grid: Grid, x: Tensor, solver: Solver | None = None) -> Tensor:
        """The end state on a float grid (the solve every user runs) by `solver` (default the fit's), no autograd."""
        with torch.no_grad():
            return solve(self.dynamics, x, grid, solver or self.solver, **self.options).x

    def end_differentiable(self, params: Tensor, x: Tensor) -> Tensor:
        """The end state as a function of the parameters — the grid's, and a learned solver's weights (weights.py) —
        with autograd through the network's inputs."""
        points, eval_points = self.span.points(params)
        return solve_weighted(self.dynamics, x, points, self.span.solver(params, self.solver), eval_points=eval_points,
                              checkpoint=self.checkpoint, **self.options)


def sq_errors(out: Tensor, target: Tensor) -> Tensor:
    """‖out_i − target_i‖² per draw, float64."""
    return ((out.to(F64) - target.to(F64)) ** 2).flatten(1).sum(1)


@dataclass
class Objective:
    """The objective over one pool of draws (this rank's chunks in `data`), counted in `ledger`.

    Per draw r_i = ‖x_K − x*‖²/d; "mean": the mean of r; "trimmed": the mean over the (1 − trim) fraction of draws
    with the smallest r; "log": the mean of c·log(1 + r/c) with c the (1 − trim)-quantile of r on the start grid
    (`calibrate`): MSE-like below c, growing only logarithmically for the few draws far above it."""

    fit: Fit
    pool: Pool
    data: dict[int, Batch]
    ledger: Ledger
    kind: str = "mean"
    trim: float = 0.05
    dim: int = 1
    evals: int = field(default=0)
    scale: float = 1.0

    def per_draw(self, grid: Grid, solver: Solver | None = None) -> Tensor:
        """‖x_K − x*‖² of every draw (every rank's), on the float grid, by `solver` (default the fit's)."""
        def chunk(c: Chunk) -> Tensor:
            b = self.data[c.index]
            return self.ledger.run(c.size, lambda: sq_errors(self.fit.end(grid, b.x, solver), b.target))
        return self.pool.per_draw(chunk)

    def rmse(self, grid: Grid, solver: Solver | None = None) -> float:
        """RMSE per dimension over every draw (+∞ when not finite)."""
        e = math.sqrt(float(self.per_draw(grid, solver).sum()) / (self.pool.draws * self.dim))
        return e if math.isfinite(e) else math.inf

    def calibrate(self, sq: Tensor) -> None:
        """The log objective's scale c from the squared errors of the start grid."""
        if self.kind == "log":
            c = float(torch.quantile(sq / self.dim, 1.0 - self.trim))
            self.scale = c if math.isfinite(c) and c > 0 else 1.0

    def losses(self, sq: Tensor) -> Tensor:
        """Each draw's contribution: r, or c·log(1 + r/c) for the log objective."""
        r = sq / self.dim
        return self.scale * torch.log1p(r / self.scale) if self.kind == "log" else r

    def kept(self, sq: Tensor) -> Tensor:
        """The draws the objective averages over: all, or (trimmed) the (1 − trim) fraction with the smallest r."""
        keep = torch.ones_like(sq, dtype=torch.bool)
        if self.kind == "trimmed":
            keep[torch.argsort(sq, stable=True)[max(1, math.ceil((1.0 - self.trim) * sq.numel())):]] = False
        return keep

    def value_of(self, sq: Tensor) -> float:
        """The objective from every draw's squared error."""
        keep = self.kept(sq)
        v = float(self.losses(sq)[keep].sum()) / int(keep.sum())
        return v if math.isfinite(v) else math.inf

    def value(self, grid: Grid, solver: Solver | None = None) -> float:
        """The objective on a float grid (no gradient), by `solver` (default the fit's)."""
        self.evals += 1
        return self.value_of(self.per_draw(grid, solver))

    def value_at(self, params: Tensor) -> float:
        """The objective at parameters (no gradient): their grid, and their solver (a learned one's weights)."""
        span = self.fit.span
        return self.value(span.grid(params), span.solver(params, self.fit.solver))

    def value_and_grad(self, params: Tensor) -> tuple[float, Tensor]:
        """The objective and its gradient in `params`: one forward and one backward pass per chunk (trimmed: every
        chunk's forward pass first, its graph kept, to know which draws are kept)."""
        self.evals += 1
        model, graphs = self.fit.dynamics.model, {}

        def forward(c: Chunk) -> Tensor:
            leaf, before = params.detach().clone().requires_grad_(True), model.nfe
            with torch.enable_grad():
                sq = sq_errors(self.fit.end_differentiable(leaf, self.data[c.index].x), self.data[c.index].target)
            graphs[c.index] = (leaf, sq, model.nfe - before)
            return sq.detach()

        keep = None
        if self.kind == "trimmed":
            keep = self.kept(self.pool.per_draw(lambda c: self.ledger.run(c.size, lambda: forward(c))))
        offsets = _offsets(self.pool.chunks)

        def backward(c: Chunk) -> Tensor:
            if c.index not in graphs:
                forward(c)
            leaf, sq, calls = graphs.pop(c.index)
            with torch.enable_grad():
                lost = self.losses(sq)
                if keep is not None:
                    lost = lost[keep[offsets[c.index]: offsets[c.index] + c.size].to(lost.device)]
                loss = lost.sum()
                before = model.nfe
                (grad,) = torch.autograd.grad(loss, leaf, allow_unused=True)
            self.ledger.backward(calls, c.size)
            if self.fit.checkpoint:
                self.ledger.recomputed(calls - (model.nfe - before), c.size)
            return torch.cat([loss.detach().reshape(1).cpu(), (torch.zeros_like(leaf) if grad is None else grad)])

        total = self.pool.total(lambda c: self.ledger.run(c.size, lambda: backward(c)), params.numel() + 1)
        count = self.pool.draws if keep is None else int(keep.sum())
        value, grad = float(total[0]) / count, total[1:] / count
        if not (math.isfinite(value) and bool(torch.isfinite(grad).all())):
            bad = "the objective" if not math.isfinite(value) else "its gradient"
            raise TuningError(
                f"{bad} is not finite at refinement evaluation {self.evals} (value {value:.4g}); the network may "
                f"overflow or be non-differentiable under autograd at these times: pass gradient='fd' (finite "
                f"differences), or dtype=torch.float64")
        return value, grad


def _offsets(chunks: list[Chunk]) -> list[int]:
    out, at = [], 0
    for c in chunks:
        out.append(at)
        at += c.size
    return out


@contextmanager
def frozen_weights(net: Any) -> Iterator[None]:
    """The network's parameters with requires_grad off inside the block (restored after): autograd goes through
    the network's inputs, never into its weights."""
    params = list(net.parameters()) if isinstance(net, nn.Module) else []
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def autograd_problem(model: Model, x: Tensor) -> str | None:
    """Why the network cannot be differentiated through its state and time inputs (None if it can): one call on
    two draws at the middle of the schedule's range, x and t requiring grad."""
    sched = model.schedule
    t = torch.tensor([0.5 * (sched.t_min + sched.t_max)], dtype=F64, requires_grad=True)
    x_in = x[:2].detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            out = model.eps_at(x_in, differentiable_points(sched, t)[0])
            if not out.requires_grad:
                return "its output carries no autograd graph (computed outside torch, or under torch.no_grad)"
            grad_x, grad_t = torch.autograd.grad(out.sum(), [x_in, t], allow_unused=True)
    except (RuntimeError, TypeError) as e:
        return f"a call or backward pass with inputs that require grad failed ({type(e).__name__}: {e})"
    finally:
        model.finite_checks.clear()
    if grad_x is None or grad_t is None:
        return f"its output does not depend on its {'state' if grad_x is None else 'time'} input under autograd"
    if not (bool(torch.isfinite(grad_x).all()) and bool(torch.isfinite(grad_t).all())):
        return "its gradient at the middle of the time range is not finite"
    return None
