"""The refinement's optimisers: L-BFGS-B on the objective (exact gradients, or finite differences) and Nelder–Mead.

Each minimises f(p)/f(p_0) (so that tolerances are relative) within a budget of objective evaluations and stops at
the deadline (ledger.OutOfTime): the best point evaluated so far is returned either way, never worse than p_0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import GridError
from ..schedules import F64
from .ledger import OutOfTime

OPTIMIZERS = ("lbfgs", "nelder-mead")


PATIENCE = 5  # evaluations without a relative improvement of STALL that end a stage (its line search has stalled)
STALL = 1e-5


class Stalled(Exception):
    """No progress for PATIENCE evaluations."""


@dataclass
class Best:
    """The best point evaluated so far; raises Stalled after PATIENCE evaluations without progress."""

    params: np.ndarray
    value: float
    evals: int = 0
    stopped: str = ""
    patience: int | None = None  # None: never stalls
    since: int = 0  # evaluations since the last improvement

    def see(self, p: np.ndarray, value: float) -> None:
        self.evals += 1
        improved = value < self.value * (1 - STALL)
        if value < self.value:
            self.params, self.value = np.array(p, copy=True), value
        self.since = 0 if improved else self.since + 1
        if self.patience is not None and self.since >= self.patience:
            raise Stalled

    def value_at(self, value: Callable[[Tensor], float], p: np.ndarray) -> float:
        """value(p), +∞ where p is not a grid (steps below float resolution); seen."""
        try:
            v = value(torch.tensor(p, dtype=F64))
        except GridError:
            v = math.inf
        self.see(p, v)
        return v


def lbfgs(value_and_grad: Callable[[Tensor], tuple[float, Tensor]] | None, value: Callable[[Tensor], float],
          p0: Tensor, f0: float, budget: int, fd_step: float) -> Best:
    """L-BFGS-B from p0 with the exact gradient (`value_and_grad`), or with forward differences of `value` (step
    `fd_step`) when it is None."""
    from scipy.optimize import minimize

    # a finite-difference gradient spends P + 1 evaluations that seldom improve: more patience
    best = Best(p0.numpy().copy(), f0, patience=PATIENCE if value_and_grad is not None else 3 * (p0.numel() + 1))
    scale = f0 if f0 > 0 and math.isfinite(f0) else 1.0

    def with_grad(p: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            v, g = value_and_grad(torch.tensor(p, dtype=F64))  # type: ignore[misc]
        except GridError:  # steps below float resolution: not a grid
            return math.inf, np.zeros_like(p)
        best.see(p, v)
        return v / scale, g.numpy() / scale

    def plain(p: np.ndarray) -> float:
        return best.value_at(value, p) / scale

    options = {"maxfun": budget, "maxiter": budget, "ftol": 1e-9, "gtol": 0.0}
    try:
        if value_and_grad is not None:
            minimize(with_grad, p0.numpy(), jac=True, method="L-BFGS-B", options=options)
        else:
            minimize(plain, p0.numpy(), method="L-BFGS-B", options={**options, "eps": fd_step})
    except OutOfTime:
        best.stopped = "max_seconds"
    except Stalled:
        pass
    return best


def nelder_mead(value: Callable[[Tensor], float], p0: Tensor, f0: float, budget: int) -> Best:
    """Nelder–Mead from p0 within `budget` evaluations, restarted with a fresh simplex while it improves."""
    from scipy.optimize import minimize

    best = Best(p0.numpy().copy(), f0)

    def f(p: np.ndarray) -> float:
        return best.value_at(value, p)

    start, start_f, scale = best.params, f0, 0.3
    try:
        while best.evals < budget:
            simplex = start + scale * np.vstack([np.zeros(len(start)), np.eye(len(start))])
            minimize(f, start, method="Nelder-Mead", options={
                "maxfev": budget - best.evals, "xatol": 1e-4, "fatol": 1e-9 * start_f, "initial_simplex": simplex})
            if not best.value < start_f * (1 - 1e-4):
                break
            start, start_f, scale = best.params, best.value, scale / 2
    except OutOfTime:
        best.stopped = "max_seconds"
    except Stalled:
        pass
    return best
