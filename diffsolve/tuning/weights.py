"""The parameters of a learned solver: its grid's (span.py) and the Δ of every combination of its plan.

θ = [grid parameters (K − 1 step logits, and K − 1 evaluation shifts when decoupled) | Δ_1 | Δ_2 | …], Δ_c one value
per output combination c weighs (diffsolve.solvers.exp.learned: w_c = w⁰_c + f_c·P Δ_c). With parameters that require
grad the solver's Δ are 0-d tensors (its plan is differentiable, the tuner's gradient reaches them); otherwise floats
(the solver a user runs, saved in the file). Δ = 0 is the base method on the grid: the stage starts from the tuned grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import grids as grids_mod
from ..grids import Grid
from ..points import Point
from ..schedules import F64
from ..solvers.base import Solver
from ..solvers.exp.learned import LearnedMultistep, plan_sizes
from .span import Span


@dataclass(frozen=True)
class WeightSpan:
    """A grid's parameters (`span`, decoupled or not) followed by the Δ of a learned `base` solver's combinations."""

    span: Span
    base: LearnedMultistep  # unlearned: the base method, the options it is learned with, the conditions kept
    decoupled: bool
    sizes: tuple[int, ...]  # outputs per combination, in plan.combos() order

    @classmethod
    def of(cls, span: Span, solver: Solver, options: dict[str, Any], decoupled: bool, conditions: int) -> WeightSpan:
        """The parameters of `solver` (with `options`) learned on K-step grids of `span`."""
        base = LearnedMultistep(solver, options, None, conditions)
        sizes = plan_sizes(base.plan_on(grids_mod.make("logsnr", span.schedule, span.steps)))
        return cls(span, base, decoupled, tuple(sizes))

    @property
    def steps(self) -> int:
        return self.span.steps

    def grid_size(self) -> int:
        return self.span.size(self.decoupled)

    def size(self) -> int:
        """The number of parameters: the grid's and one per weight."""
        return self.grid_size() + sum(self.sizes)

    def deltas(self, params: Tensor) -> list[tuple[Any, ...]]:
        """Δ per combination: 0-d tensors of `params` when it requires grad, else floats."""
        rest = params[self.grid_size():]
        values: Any = rest.unbind() if rest.requires_grad else rest.tolist()
        out, at = [], 0
        for k in self.sizes:
            out.append(tuple(values[at: at + k]))
            at += k
        return out

    def solver(self, params: Tensor, solver: Solver | None = None) -> LearnedMultistep:
        """The learned solver at these parameters."""
        b = self.base
        return LearnedMultistep(b.base, b.learned_options, self.deltas(params), b.conditions)

    def grid(self, params: Tensor) -> Grid:
        return self.span.grid(params[: self.grid_size()])

    def points(self, params: Tensor) -> tuple[list[Point], list[Point] | None]:
        return self.span.points(params[: self.grid_size()])

    def params_of(self, grid: Grid, solver: Solver | None = None) -> Tensor:
        """The parameters of a grid and a learned solver's Δ (zeros for the base method)."""
        deltas = solver.deltas if isinstance(solver, LearnedMultistep) else None
        flat = [v for d in deltas for v in d] if deltas is not None else [0.0] * sum(self.sizes)
        return torch.cat([self.span.params_of(grid, self.decoupled), torch.tensor(flat, dtype=F64)])
