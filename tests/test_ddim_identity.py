"""One Euler step of the DDIM ODE in σ̄ is exactly the DDIM (η = 0) update (docs/design.md §1)."""

import pytest
import torch

import diffsolve as ds

F64 = torch.float64


def _net(x, t):
    # any smooth function of (x, t) serves: the identity is algebraic
    return torch.sin(x) * (1 + 0.001 * t.reshape(-1, 1)) + 0.1 * x


@pytest.mark.parametrize("schedule", [ds.VPLinear(), ds.DiscreteDDPM()], ids=repr)
def test_euler_in_sigma_bar_is_ddim(schedule):
    torch.manual_seed(0)
    x = torch.randn(8, 16, dtype=F64)
    if isinstance(schedule, ds.DiscreteDDPM):
        steps = torch.tensor([999, 899, 700, 401, 100, 20, 0])
        t = schedule.t_from_step(steps)
        acp = schedule.alphas_cumprod[steps]
    else:
        t = ds.grids.logsnr(schedule, 6).t
        acp = schedule.alpha(t) ** 2
    model = ds.EpsModel(_net, schedule)
    sol = ds.solve(ds.DDIMODE(model, "sigma"), x, ds.grids.custom(schedule, t), "euler", trajectory=True)
    # the DDIM update written with ᾱ as in the DDIM paper, from the same network
    xs = x
    for i in range(len(t) - 1):
        a_s, a_t = acp[i], acp[i + 1]
        eps = _net(xs, schedule.model_time(t[i]).expand(xs.shape[0]))
        x0 = (xs - (1 - a_s).sqrt() * eps) / a_s.sqrt()
        xs = a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps
        rel = ((sol.trajectory[i + 1] - xs).norm() / xs.norm()).item()
        assert rel <= 1e-12, f"step {i}: relative difference {rel:.2e}"
    assert sol.nfe == len(t) - 1


def test_the_three_ode_forms_have_the_same_drift():
    """dx/dt of the PF-ODE = α dx̄/dt + x̄ dα/dt, with dx̄/dt = (dx̄/dσ̄)(dσ̄/dt) = (dx̄/dλ)(dλ/dt)."""
    s = ds.VPLinear()
    x = torch.randn(4, 3, dtype=F64)
    model = ds.EpsModel(_net, s)
    t = 0.37
    p = ds.make_point(s, t)
    tt = torch.tensor(t, dtype=F64, requires_grad=True)
    (dsb,) = torch.autograd.grad(s.sigma_bar(tt), tt)
    tt = torch.tensor(t, dtype=F64, requires_grad=True)
    (dlam,) = torch.autograd.grad(s.lam(tt), tt)
    xbar = x / p.alpha
    f_t = ds.ProbabilityFlowODE(model).drift(x, p)
    for variable, dvar in (("sigma", dsb), ("lambda", dlam), ("t", 1.0)):
        dyn = ds.DDIMODE(model, variable)
        dxbar_dt = dyn.drift(dyn.to_state(x, p), p) * dvar
        f_from = p.alpha * dxbar_dt + xbar * (-0.5 * p.beta * p.alpha)
        assert torch.allclose(f_from, f_t, rtol=1e-11, atol=1e-12), variable


@pytest.mark.parametrize("schedule", [ds.VPLinear(), ds.DiscreteDDPM()], ids=repr)
def test_stochastic_ddim_with_eta_one_is_ddpm_on_the_same_path(schedule):
    """ddim(eta=1) reads the shared Brownian path, so on the same grid and seed it is ddpm, to float64 round-off;
    eta > 0 is declared stochastic (it samples the reverse SDE), eta = 0 deterministic."""
    x = torch.randn(8, 16, dtype=F64, generator=torch.Generator().manual_seed(1))
    model = ds.EpsModel(_net, schedule)
    sde = ds.VPSDE(schedule).reverse(model)
    grid = ds.grids.logsnr(schedule, 7)
    ddim = ds.solve(sde, x, grid, "ddim", eta=1.0, seed=5)
    ddpm = ds.solve(sde, x, grid, "ddpm", seed=5)
    assert ddim.nfe == ddpm.nfe == 7
    assert torch.allclose(ddim.x, ddpm.x, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(ddim.x, ds.solve(sde, x, grid, "ddpm", seed=6).x, atol=1e-3)
    solver = ds.get_solver("ddim")
    assert solver.stochastic_for(eta=1.0) and solver.stochastic_for(eta=0.3)
    assert not solver.stochastic_for(eta=0.0) and not solver.stochastic_for()
    # sample() builds what the options declare: the reverse SDE for eta > 0
    again = ds.sample(model, x, solver="ddim", steps=7, eta=1.0, seed=5)
    assert torch.equal(again.x, ddim.x)
