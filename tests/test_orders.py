"""Measured convergence orders of the generic solvers on a problem with a closed-form solution."""

import numpy as np
import pytest
import torch

import diffsolve as ds
from tests.gaussian import GaussianData

F64 = torch.float64


def fitted_order(solver: str, variable: str, steps: list[int]) -> float:
    """−slope of log(max error) against log(NFE) over `steps` on a uniform-λ grid."""
    data, schedule = GaussianData(), ds.VPLinear()
    model = data.model(schedule)
    x = torch.randn(16, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    errors, nfes = [], []
    for n in steps:
        grid = ds.grids.logsnr(schedule, n)
        sol = ds.solve(ds.ode(model, variable), x, grid, solver)
        exact = data.exact(x, schedule, schedule.t_max, schedule.t_min)
        errors.append((sol.x - exact).abs().max().item())
        nfes.append(sol.nfe)
    return -np.polyfit(np.log(nfes), np.log(errors), 1)[0]


@pytest.mark.parametrize(
    "solver, order",
    [("euler", 1), ("heun", 2), ("midpoint", 2), ("ralston", 2), ("rk3", 3), ("rk4", 4)],
)
def test_fixed_step_orders_in_t(solver, order):
    assert abs(fitted_order(solver, "t", [32, 64, 128]) - order) <= 0.2


@pytest.mark.parametrize("solver, order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_orders_hold_in_sigma_bar(solver, order):
    assert abs(fitted_order(solver, "sigma", [32, 64, 128]) - order) <= 0.2


def test_adaptive_dopri5_reaches_its_tolerance():
    data, schedule = GaussianData(), ds.VPLinear()
    model = data.model(schedule)
    x = torch.randn(16, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    exact = data.exact(x, schedule, schedule.t_max, schedule.t_min)
    for rtol in (1e-6, 1e-9):
        sol = ds.solve(ds.ode(model, "sigma"), x, ds.grids.time(schedule, 1), "dopri5", rtol=rtol, atol=rtol)
        assert (sol.x - exact).abs().max().item() < 100 * rtol
    assert sol.nfe > 20


def test_our_euler_and_midpoint_match_torchdiffeq_on_the_same_grid():
    data, schedule = GaussianData(), ds.VPLinear()
    model = data.model(schedule)
    x = torch.randn(8, 3, dtype=F64)
    grid = ds.grids.karras(schedule, 9)
    for ours, theirs in (("euler", "torchdiffeq_euler"), ("midpoint", "torchdiffeq_midpoint")):
        a = ds.solve(ds.ode(model, "t"), x, grid, ours)
        b = ds.solve(ds.ode(model, "t"), x, grid, theirs)
        assert torch.allclose(a.x, b.x, rtol=1e-12, atol=1e-13)
        assert a.nfe == b.nfe
