"""Adaptive DPM-Solver-12 / 23 (Lu et al. 2022a, Alg. 4): embedded lower/higher-order singlestep pairs in λ.

A trial step of size h in λ computes x_low (order k−1) and x_high (order k) sharing evaluations;
E = max over the batch of RMS((x_high − x_low)/δ), δ = max(atol, rtol·max(|x_low|, |x_prev|)).
E ≤ 1 accepts x_high; either way h ← min(θ h E^{−1/k}, remaining). The evaluation at the step's start
is reused by rejected retries. Acceptance reads E on the host each trial (inherent to step control).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ...checks import Option, tolerance
from ...dynamics import Dynamics
from ...errors import SolverError
from ...grids import Grid
from ...points import make_point
from ..base import node_points, register
from ..options import THRESHOLD
from .base import ExpSolver, combine, form_option, take_step
from .coeffs import Combo, Node, first_order, linear_part
from .phi import phi
from .singlestep import node, singlestep
from .threshold import Prediction


def lower_combo(form: str, order: int, s: Node, stage: Node, t: Node) -> Combo:
    """The embedded lower-order result: DDIM (pair 1/2), or DPM-Solver-2 with r₁ = ⅓ (pair 2/3)."""
    if order == 2:
        return first_order(form, s, t)
    a, c, z, h = linear_part(form, s, t)
    base = c * h * phi(1, z)
    r1 = (stage.lam - s.lam) / h
    return Combo(a, (base - base / (2 * r1), base / (2 * r1)))


class DPMAdaptive(ExpSolver):
    """Adaptive DPM-Solver: the singlestep steps of DPM-Solver-k under a step-size controller in λ;
    the NFE counted includes rejected trials."""

    name = "dpm_adaptive"
    order = 3
    adaptive = True
    evaluates_at_nodes = False  # its steps are its own, not the grid's
    schema = (
        Option("order", "int", 3, "the order of the accepted steps (embedded pair order − 1 / order)", low=2, high=3),
        tolerance("rtol", 0.05, "relative tolerance of the error control"),
        tolerance("atol", 0.0078, "absolute tolerance of the error control"),
        Option("h_init", "float", 0.05, "the first trial step in λ", low=0.0, open_low=True),
        Option("theta", "float", 0.9, "the safety factor of the step-size update", low=0.0, high=1.0, open_low=True),
        Option("max_trials", "int", 10_000, "the most trial steps before giving up", low=1),
        form_option("noise"),
    ) + THRESHOLD
    renamed = {"prediction": "form"}
    form = "noise"
    description = (
        "adaptive DPM-Solver-12/23 (order= 2 | 3, default 3) with rtol (0.05), atol (0.0078), h_init (0.05 in λ); "
        "the grid gives the end points (and, with record, the output times)"
    )

    def nfe_for(self, steps: int) -> None:
        return None

    def advance(
        self, fn: Prediction, dynamics: Dynamics, x: Tensor, grid: Grid, form: str, record: bool,
        options: dict[str, Any],
    ) -> tuple[Tensor, list[Tensor]]:
        return self.control(fn, dynamics, x, grid, form, record, **options)

    def control(
        self, fn: Prediction, dynamics: Dynamics, x: Tensor, grid: Grid, form: str, record: bool, *,
        order: int = 3, rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05, theta: float = 0.9,
        max_trials: int = 10_000,
    ) -> tuple[Tensor, list[Tensor]]:
        """Trial steps s → s + h; E ≤ 1 accepts x_high; h ← θ h E^{−1/k}."""
        schedule = dynamics.schedule
        ends = node_points(dynamics, grid)
        r = (0.5,) if order == 2 else (1 / 3, 2 / 3)
        h = float(h_init)
        trials = 0
        x_prev = x
        trajectory: list[Tensor] = []
        s = ends[0]
        for target in ends[1:]:
            m_s: Tensor | None = None
            while s.lam < target.lam:
                trials += 1
                if trials > max_trials:
                    raise SolverError(
                        f"{self.name} rejected or took more than max_trials={max_trials} trial steps; loosen "
                        f"rtol/atol (now {rtol}, {atol}) or raise max_trials"
                    )
                remaining = target.lam - s.lam
                t = target if h >= remaining else make_point(schedule, schedule.t_from_lambda(s.lam + h))
                hh = t.lam - s.lam
                stages = [make_point(schedule, schedule.t_from_lambda(s.lam + ri * hh)) for ri in r]
                if m_s is None:
                    m_s = fn(x, s)
                x_high, ms = take_step(fn, x, m_s, singlestep(form, order, s, stages, t), [m_s])
                x_low = combine(x, lower_combo(form, order, node(s), node(stages[0]), node(t)), ms)
                delta = torch.clamp(rtol * torch.maximum(x_low.abs(), x_prev.abs()), min=atol)
                err = ((x_high - x_low) / delta).reshape(x.shape[0], -1).square().mean(-1).sqrt().max()
                e = float(err)  # the one host read per trial that step control needs
                if not math.isfinite(e):
                    if dynamics.model is not None and dynamics.model.check_finite:
                        dynamics.model.raise_if_not_finite()  # the network's NaN/Inf (or the state's) by its call
                    raise SolverError(f"{self.name}: the error estimate is {e} at t = {s.t:.6g} although the "
                                      f"network's outputs were finite (or not checked); check the model's output "
                                      f"scale, or pass check_finite=True to the model to find the call")
                if e <= 1.0:
                    x, x_prev, s, m_s = x_high, x_low, t, None
                h = theta * hh * max(e, 1e-10) ** (-1.0 / order)
            if record:
                trajectory.append(x)
        return x, trajectory


register(DPMAdaptive())
