"""Runge–Kutta solvers ending at σ = 0 (to_zero, end="zero"): after the grid's last step one more evaluation returns
x̂0 = (x − σ ε)/α there, counted in the budget; Euler and Heun also step on grids with decoupled evaluation times.

Exact identities on an analytic Gaussian mixture (float64): heun with to_zero is heun to the grid's end and then x̂0
of that state; Euler in σ̄ with to_zero is DDIM with to_zero (Euler in σ̄ on the DDIM ODE is DDIM)."""

from __future__ import annotations

import contextlib

import pytest
import torch

import diffsolve as ds
from diffsolve.peer_grids import peer_grid
from diffsolve.plan import plan
from tests._expo_gmm import MixtureEps

F64 = torch.float64
RK = ("euler", "heun", "midpoint", "ralston", "rk3", "rk4")


def _gmm(schedule: ds.Schedule) -> tuple[ds.Model, torch.Tensor]:
    net = MixtureEps(schedule, dim=16, components=4, scale=0.1, seed=1)
    return ds.wrap(net, schedule, "eps"), net.prior(6, seed=2)


@pytest.mark.parametrize("solver", RK)
def test_to_zero_is_the_solve_to_the_grid_end_then_its_x0(solver):
    """ds.solve: x̂0 of the state the same solve ends with, one evaluation more; the trajectory ends with x̂0."""
    schedule = ds.VPLinear()
    model, x = _gmm(schedule)
    grid = ds.grids.logsnr(schedule, 5)
    ode = ds.ode(model, "sigma")
    zero = ds.solve(ode, x, grid, solver, to_zero=True, trajectory=True)
    end = ds.solve(ode, x, grid, solver, trajectory=True)
    assert torch.equal(zero.x, model.x0(end.x, grid.t[-1]))
    assert zero.nfe == end.nfe + 1 == ds.get_solver(solver).nfe_for(grid.steps) + 1
    assert zero.trajectory.shape[0] == grid.steps + 2 and torch.equal(zero.trajectory[:-1], end.trajectory)
    assert torch.equal(zero.trajectory[-1], zero.x)


@pytest.mark.parametrize("nfe,steps", [(13, 6), (12, 5), (3, 1)])
def test_sample_heun_with_end_zero_spends_the_budget(nfe, steps):
    """ds.sample(solver="heun", end="zero"): (nfe − 1) // 2 Heun steps and the step to σ = 0, the NFE counted."""
    schedule = ds.VPLinear()
    model, x = _gmm(schedule)
    warns = pytest.warns(UserWarning, match="spent 11 evaluations of the nfe=12")
    with warns if nfe % 2 == 0 else contextlib.nullcontext():
        sol = ds.sample(model, x, solver="heun", nfe=nfe, end="zero")
    assert sol.steps == steps and sol.nfe == 2 * steps + 1 == nfe - (nfe % 2 == 0)
    to_end = ds.sample(model, x, solver="heun", steps=steps)
    assert torch.equal(sol.x, model.x0(to_end.x, to_end.grid.t[-1]))
    assert plan(model, "heun", nfe=nfe, end="zero").options == {"to_zero": True}


@pytest.mark.parametrize("schedule", [ds.VPLinear(), ds.DiscreteDDPM()], ids=["linear", "discrete"])
def test_euler_to_zero_in_sigma_bar_is_ddim_to_zero(schedule):
    model, x = _gmm(schedule)
    grid = ds.grids.karras(schedule, 7)
    euler = ds.solve(ds.ode(model, "sigma"), x, grid, "euler", to_zero=True)
    ddim = ds.solve(ds.ode(model, "lambda"), x, grid, "ddim", to_zero=True)
    assert euler.nfe == ddim.nfe == 8
    assert torch.allclose(euler.x, ddim.x, rtol=1e-12, atol=1e-12)


def test_euler_and_heun_take_decoupled_evaluation_times():
    """On a grid whose network times differ from its step times (k-diffusion's fractional steps on a DDPM table),
    Euler in σ̄ is still DDIM; Heun calls the network at the nodes' evaluation times only; midpoint is refused."""
    schedule = ds.DiscreteDDPM()
    net, seen = MixtureEps(schedule, dim=16, components=4, scale=0.1, seed=1), []
    model = ds.wrap(lambda x_, t_: seen.append(float(t_[0])) or net(x_, t_), schedule, "eps")
    x = net.prior(6, seed=2)
    grid = peer_grid(schedule, 9, spacing="linspace", family="k")
    assert grid.decoupled
    euler = ds.solve(ds.ode(model, "sigma"), x, grid, "euler", to_zero=True)
    ddim = ds.solve(ds.ode(model, "lambda"), x, grid, "ddim", to_zero=True)
    # round-off only: the two forms' arithmetic differs and x̄ = x/α reaches σ̄_max ≈ 157 on the DDPM table
    # (1.8e-12 apart on an AVX-512 CPU); a different method would be ≥ 1e-3 apart
    assert torch.allclose(euler.x, ddim.x, rtol=1e-10, atol=1e-10)
    seen.clear()
    heun = ds.solve(ds.ode(model, "sigma"), x, grid, "heun", to_zero=True)
    n = [p.model_time for p in grid.eval_points]
    assert seen == [n[0]] + [v for v in n[1:-1] for _ in (0, 1)] + [n[-1]] * 2
    plain = ds.solve(ds.ode(model, "sigma"), x, ds.grids.Grid(schedule, grid.t, "nodes"), "heun", to_zero=True)
    assert not torch.allclose(plain.x, heun.x, rtol=1e-9, atol=0)  # the evaluation times matter
    with pytest.raises(ds.SolverError, match="decoupled evaluation times.*'midpoint' does not.*'euler'.*'heun'"):
        ds.solve(ds.ode(model, "sigma"), x, grid, "midpoint")


@pytest.mark.parametrize("solver,variable", [("heun", "sigma"), ("dpmpp2m", "lambda")])
def test_the_step_to_zero_returns_x0_itself_in_ve_coordinates(solver, variable):
    """coords="ve": the user passes x̄ and receives x̂0 itself (solve() maps the end state back with 1/α), as the
    trajectory's last entry too."""
    schedule = ds.VPLinear()
    net = MixtureEps(schedule, dim=16, components=4, scale=0.1, seed=1)
    x = net.prior(6, seed=2)
    vp = ds.wrap(net, schedule, "eps")
    ve = ds.wrap(lambda x_bar, t: net(x_bar * schedule.alpha(t)[:, None], t), schedule, "eps", coords="ve")
    grid = ds.grids.logsnr(schedule, 4)
    a = ds.solve(ds.ode(vp, variable), x, grid, solver, to_zero=True)
    b = ds.solve(ds.ode(ve, variable), x / float(schedule.alpha(grid.t[0])), grid, solver, to_zero=True,
                 trajectory=True)
    assert torch.allclose(a.x, b.x, rtol=1e-12, atol=1e-12) and torch.equal(b.trajectory[-1], b.x)


def test_to_zero_needs_a_model_backed_ode():
    schedule = ds.VPLinear()
    model, x = _gmm(schedule)

    class Decay(ds.Dynamics):
        def drift(self, y, p):
            return -y

    grid = ds.grids.logsnr(schedule, 4)
    ds.solve(Decay(schedule, None), x, grid, "heun")  # any ODE without the step to σ = 0
    with pytest.raises(ds.SolverError, match="model-backed ODE from noise to data.*it has no model"):
        ds.solve(Decay(schedule, None), x, grid, "heun", to_zero=True)
    decoupled = peer_grid(ds.DiscreteDDPM(), 5, spacing="linspace", family="k")
    with pytest.raises(ds.SolverError, match="calls its model at the step's own time only"):
        ds.solve(Decay(decoupled.schedule, model), x, decoupled, "heun")


def test_heun_names_fix_the_variable():
    model, x = _gmm(ds.DiscreteDDPM())
    p = plan(model, "Heun", nfe=9)
    assert p.solver.name == "heun" and p.dynamics.variable == "sigma" and p.steps == 4 and p.options["to_zero"]
    assert plan(model, "Heun", nfe=9, variable="sigma").dynamics.variable == "sigma"
    with pytest.raises(ds.SolverError, match="names a whole sampler.*variable="):
        plan(model, "Heun", nfe=9, variable="t")
    assert ds.sample(model, x, solver="Heun", nfe=9).nfe == 9
