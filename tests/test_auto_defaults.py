"""The automatic defaults (issue 12): lower_order_final=None and DPM-Solver++(3M) variant=None resolve to the
named choices by step count — bit-identical to passing them — and fixed choices stay available by name."""

from __future__ import annotations

import pytest
import torch

import diffsolve as ds
from diffsolve.schedules import F64
from diffsolve.solvers.exp.base import AUTO_LOWER_ORDER_FINAL_BELOW
from diffsolve.solvers.exp.multistep import AUTO_3M_TAYLOR_FROM

PROB = ds.problems.get("gmm-2d")
SCHED = PROB.default_schedule()
MODEL = PROB.model(SCHED, dtype=F64)
X = PROB.x_T(8, 0, SCHED)


def run(solver: str, steps: int, **options) -> torch.Tensor:
    variable = "sigma" if solver.startswith("ipndm") else "lambda"
    return ds.solve(ds.ode(MODEL, variable), X, ds.grids.logsnr(SCHED, steps), solver, **options).x


@pytest.mark.parametrize("solver", ["dpmpp2m", "dpm2m", "deis", "unipc", "dpmpp3m", "dpm3m"])
def test_lower_order_final_is_on_below_the_threshold_and_off_from_it(solver):
    below, at = AUTO_LOWER_ORDER_FINAL_BELOW - 1, AUTO_LOWER_ORDER_FINAL_BELOW
    assert torch.equal(run(solver, 8), run(solver, 8, lower_order_final=True))
    assert torch.equal(run(solver, below), run(solver, below, lower_order_final=True))
    assert torch.equal(run(solver, at), run(solver, at, lower_order_final=False))
    assert not torch.equal(run(solver, 8, lower_order_final=True), run(solver, 8, lower_order_final=False))


@pytest.mark.parametrize("solver", ["ipndm", "ipndm_v"])
def test_ipndm_keeps_lower_order_final_off(solver):
    assert torch.equal(run(solver, 8), run(solver, 8, lower_order_final=False))


def test_dpmpp3m_uses_the_published_weights_below_the_threshold_and_taylor_from_it():
    assert torch.equal(run("dpmpp3m", 10), run("dpmpp3m", 10, variant="diffusers"))
    below, at = AUTO_3M_TAYLOR_FROM - 1, AUTO_3M_TAYLOR_FROM
    assert torch.equal(run("dpmpp3m", below), run("dpmpp3m", below, variant="diffusers"))
    assert torch.equal(run("dpmpp3m", at), run("dpmpp3m", at, variant="taylor"))
    assert torch.equal(run("dpm3m", 10), run("dpm3m", 10, variant="taylor"))  # the ε form keeps taylor


def test_the_declared_orders_are_the_asymptotic_ones():
    get = ds.solvers.get_solver
    assert get("dpmpp3m").order_for() == 3.0 and get("dpmpp3m").order_for(lower_order_final=True) == 2.0
    assert get("dpmpp3m").order_for(variant="diffusers") == 2.0 and get("unipc").order_for() == 3.0
