"""The NFE a solve reports is the number of network calls actually made, for every registered solver."""

import pytest
import torch

import diffsolve as ds
from diffsolve.plan import dynamics_for


@pytest.mark.parametrize("name", sorted(ds.SOLVERS))
def test_reported_nfe_is_counted_network_calls(name, gaussian_data):
    solver = ds.get_solver(name)
    data, schedule = gaussian_data, ds.VPLinear()
    model = data.model(schedule)
    steps = max(solver.min_steps, 6)
    grid = ds.grids.logsnr(schedule, steps)
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    options = {"seed": 0} if "seed" in solver.options else {}
    dynamics = dynamics_for(model, solver, options)  # what it declares: the reverse SDE, the ODE in λ or in σ̄
    before = data.calls
    sol = ds.solve(dynamics, x, grid, name, **options)
    assert sol.nfe == data.calls - before > 0
    promised = solver.nfe_for(steps)
    if promised is not None:
        assert sol.nfe == promised
    assert torch.isfinite(sol.x).all()


@pytest.mark.parametrize("name", sorted(n for n, s in ds.SOLVERS.items() if "to_zero" in s.options))
def test_the_step_to_zero_is_one_counted_call_more(name, gaussian_data):
    """to_zero: nfe_for(steps) + 1 calls, counted; the trajectory holds every grid time, then x̂0 (= x)."""
    solver = ds.get_solver(name)
    data, schedule = gaussian_data, ds.VPLinear()
    model = data.model(schedule)
    grid = ds.grids.logsnr(schedule, 6)
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    options = {"to_zero": True, **({"seed": 0} if "seed" in solver.options else {})}
    before = data.calls
    sol = ds.solve(dynamics_for(model, solver, options), x, grid, name, trajectory=True, **options)
    assert sol.nfe == data.calls - before == solver.nfe_for(6) + 1
    assert sol.trajectory.shape[0] == 8 and torch.equal(sol.trajectory[-1], sol.x)


def test_trajectory_holds_every_grid_time_in_user_coordinates(gaussian_data):
    data, schedule = gaussian_data, ds.EDM()
    model = data.model(schedule)
    x = 80.0 * torch.randn(4, 3, dtype=torch.float64)
    model.coords = "ve"
    sol = ds.solve(ds.ode(model, "sigma"), x, ds.grids.karras(schedule, 5), "heun", trajectory=True)
    assert sol.trajectory.shape == (6, 4, 3)
    assert torch.allclose(sol.trajectory[0], x, rtol=1e-14)
    assert torch.equal(sol.trajectory[-1], sol.x)


def test_sample_runs_stochastic_solvers_on_the_reverse_sde(gaussian_data):
    data, schedule = gaussian_data, ds.VPLinear()
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = ds.sample(data.model(schedule), x, solver="euler_maruyama", nfe=8, seed=1)
    b = ds.sample(data.model(schedule), x, solver="euler_maruyama", nfe=8, seed=1)
    c = ds.sample(data.model(schedule), x, solver="euler_maruyama", nfe=8, seed=2)
    assert a.nfe == 8 and torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
