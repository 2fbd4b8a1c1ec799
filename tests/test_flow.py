"""Rectified-flow paths (docs/design.md §6): velocity models, FlowMatch Euler, one ODE in (x̄, σ̄), orders, marginals."""

import pytest
import torch

import diffsolve as ds
from diffsolve.bench.metrics import fitted_order
from tests.gaussian import GaussianData

F64 = torch.float64
PATHS = [ds.Flow(), ds.Flow(shift=3.0), ds.VPLinear(), ds.VPCosine()]


def _eps_net(x, t):
    return torch.tanh(x) * (0.5 + t.reshape(-1, 1))


@pytest.mark.parametrize("sched", PATHS, ids=repr)
def test_velocity_model_views_equal_the_eps_model(sched):
    """v = α' x0 + σ' ε built from an ε-network; FlowModel's ε and x̂0 views give the ε-model's back."""
    eps_model = ds.EpsModel(_eps_net, sched, time_input=lambda t: t)

    def v_net(x, t):
        p = ds.make_point(sched, float(t[0]))
        eps = _eps_net(x, t)
        x0 = (x - p.sigma * eps) / p.alpha
        return p.d_alpha * x0 + p.d_sigma * eps

    flow = ds.wrap(v_net, sched, "velocity", time_input=lambda t: t)
    assert isinstance(flow, ds.FlowModel)
    x = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    for t in torch.linspace(sched.t_min, sched.t_max, 7, dtype=F64)[1:-1].tolist():
        assert torch.allclose(flow.eps(x, t), eps_model.eps(x, t), rtol=1e-9, atol=1e-11)
        assert torch.allclose(flow.x0(x, t), eps_model.x0(x, t), rtol=1e-9, atol=1e-11)


def test_rectified_flow_velocity_is_noise_minus_data():
    """On Flow(shift=k) the velocity is d/dσ of x = (1 − σ) x0 + σ ε, i.e. v = ε − x0, whatever the shift."""
    sched = ds.Flow(shift=3.0)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 2, dtype=F64, generator=g), torch.randn(4, 2, dtype=F64, generator=g)
    t = 0.37
    sigma = float(sched.sigma(t))
    x = (1 - sigma) * x0 + sigma * eps
    model = ds.FlowModel(lambda v, tau: eps - x0, sched)
    assert torch.allclose(model.x0(x, t), x0, rtol=1e-13, atol=1e-13)
    assert torch.allclose(model.eps(x, t), eps, rtol=1e-13, atol=1e-13)
    seen = []
    ds.FlowModel(lambda v, tau: seen.append(tau) or v, sched, time_scale=1000.0).velocity(x, t)
    assert float(seen[0][0]) == pytest.approx(1000.0 * sigma, rel=1e-6)  # diffusers' timestep = 1000 σ


def test_velocity_model_refuses_ve_coordinates():
    with pytest.raises(ds.ModelError, match="coords='vp'"):
        ds.FlowModel(lambda x, t: x, ds.Flow(), coords="ve")


# ---- diffusers' FlowMatchEulerDiscreteScheduler ----------------------------------------------------
diffusers = pytest.importorskip("diffusers")


def _tiny_unet():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=2, out_channels=2, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    ).to(F64).eval()


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_one_euler_step_in_sigma_bar_is_flowmatch_euler(shift):
    """x̄ + (σ̄' − σ̄) ε, mapped back by α', equals diffusers' x + (σ' − σ) v (≤ 1e-6 relative, float64)."""
    from diffsolve.interop import from_diffusers, grid_from_sigmas

    unet = _tiny_unet()
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    scheduler.set_timesteps(12)
    model = from_diffusers(unet, scheduler)
    assert isinstance(model.schedule, ds.Flow) and model.schedule.shift == shift
    sigmas = scheduler.sigmas
    x = torch.randn(2, 2, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for i in (1, 5, 10):  # interior steps: σ = 1 (α = 0) and σ = 0 lie outside any Flow schedule
            grid = grid_from_sigmas(model.schedule, sigmas[i:i + 2])
            ours = ds.solve(ds.ode(model, "sigma"), x, grid, "euler")
            scheduler._step_index = i
            v = unet(x, scheduler.timesteps[i].to(F64).expand(2), return_dict=False)[0]
            theirs = scheduler.step(v, scheduler.timesteps[i], x, return_dict=False)[0]
            assert ours.nfe == 1
            rel = float((ours.x - theirs).norm() / theirs.norm())
            assert rel <= 1e-6, (i, rel)


def test_from_diffusers_flow_needs_a_shift_for_dynamic_shifting():
    from diffsolve.interop import from_diffusers

    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    with pytest.raises(ds.ModelError, match="use_dynamic_shifting"):
        from_diffusers(_tiny_unet(), scheduler)
    model = from_diffusers(_tiny_unet(), scheduler, shift=2.0)
    assert model.schedule == ds.Flow(t_min=1e-3, t_max=1 - 1e-3, shift=2.0)


# ---- one ODE in (x̄, σ̄) --------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["ddim", "dpmpp2m", "unipc", "deis"])
def test_vp_and_flow_give_the_same_x_bar_on_the_same_sigma_bar_grid(solver):
    """The mixture's exact ε depends on (x̄, σ̄) only, so an exponential integrator on one σ̄ grid gives one x̄."""
    from diffsolve.problems import get

    prob = get("gmm-2d")
    vp, flow = ds.VPLinear(), ds.Flow()
    sb = torch.exp(torch.linspace(torch.log(vp.sigma_bar(0.9)), torch.log(vp.sigma_bar(0.02)), 9, dtype=F64))
    xbar_T = prob.x_T(32, 0, vp, t_start=0.9) / vp.alpha(0.9)
    out = []
    for sched in (vp, flow):
        grid = ds.grids.custom(sched, sched.t_from_sigma_bar(sb))
        a0, a1 = float(sched.alpha(grid.t[0])), float(sched.alpha(grid.t[-1]))
        sol = ds.solve(ds.ode(prob.model(sched), "lambda"), xbar_T * a0, grid, solver)
        out.append(sol.x / a1)
    assert torch.allclose(out[0], out[1], rtol=1e-11, atol=1e-11), float((out[0] - out[1]).abs().max())


# ---- fitted orders on the flow schedule -----------------------------------------------------------------
@pytest.mark.parametrize("solver, variable", [
    ("euler", "t"), ("heun", "t"), ("rk4", "sigma"), ("heun", "lambda"), ("ddim", "lambda"),
    ("dpmpp2m", "lambda"), ("unipc", "lambda"),
])
def test_fitted_orders_on_the_flow_schedule(solver, variable):
    data, sched = GaussianData(), ds.Flow(shift=3.0)
    model = data.model(sched)
    t0, t1 = 0.98, 0.01
    x = torch.randn(16, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    exact = data.exact(x, sched, t0, t1)
    nfes, errs = [], []
    for steps in (32, 64, 128):
        grid = ds.grids.logsnr(sched, steps, t_start=t0, t_end=t1)
        fixed = {"lower_order_final": False} if "lower_order_final" in ds.get_solver(solver).options else {}
        sol = ds.solve(ds.ode(model, variable), x, grid, solver, **fixed)
        nfes.append(sol.nfe)
        errs.append(float((sol.x - exact).abs().max()))
    order, _ = fitted_order(nfes, errs, last=None)
    declared = ds.get_solver(solver).order
    assert abs(order - declared) <= 0.3, (nfes, errs, order)


# ---- the forward process under the flow schedule ----------------------------------------------------------
@pytest.mark.slow  # run by `python -m pytest -m slow` (CI runs both)
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_forward_sde_marginals_under_flow(shift):
    """dx = f x dt + g dW started from the exact marginal N(α x0, σ² I) at t_min keeps x_t ~ N(α_t x0, σ_t² I)."""
    sched = ds.Flow(shift=shift)
    n = 4000
    x0 = torch.tensor([1.5, -0.5, 0.0], dtype=F64)
    g = torch.Generator().manual_seed(5)
    start = sched.alpha(sched.t_min) * x0 + sched.sigma(sched.t_min) * torch.randn(n, 3, dtype=F64, generator=g)
    grid = ds.grids.time(sched, 200, t_start=sched.t_min, t_end=0.9)
    sol = ds.solve(ds.ForwardSDE(sched), start, grid, "euler_maruyama", seed=3, trajectory=True)
    for i in (50, 120, 200):
        t = float(grid.t[i])
        a, s = float(sched.alpha(t)), float(sched.sigma(t))
        xt = sol.trajectory[i]
        se_mean, se_var = s / n**0.5, s**2 * (2 / (n - 1)) ** 0.5
        assert ((xt.mean(0) - a * x0).abs() <= 4 * se_mean).all(), (t, xt.mean(0), a * x0)
        assert ((xt.var(0) - s**2).abs() <= 4 * se_var).all(), (t, xt.var(0), s**2)


# ---- the Gaussian mixture on any path ------------------------------------------------------------------------
def test_mixture_exact_velocity_and_its_model_under_flow():
    from diffsolve.problems import get

    prob, sched = get("gmm-2d"), ds.Flow(shift=3.0)
    x = prob.samples(64, 0, sched, t=0.4)
    v = prob.velocity(x, 0.4, sched)
    assert torch.allclose(v, prob.eps(x, 0.4, sched) - prob.x0(x, 0.4, sched), rtol=1e-12, atol=1e-12)
    flow_model, eps_model = prob.model(sched, prediction="velocity"), prob.model(sched)
    assert isinstance(flow_model, ds.FlowModel)
    assert torch.allclose(flow_model.velocity(x, 0.4), v, rtol=1e-12, atol=1e-12)
    assert torch.allclose(flow_model.eps(x, 0.4), eps_model.eps(x, 0.4), rtol=1e-10, atol=1e-12)
    x_T = prob.x_T(64, 1, sched)
    ref = prob.reference(x_T, sched)
    sol = ds.sample(flow_model, x_T, solver="dpmpp2m", nfe=40)
    assert torch.allclose(sol.x, ds.sample(eps_model, x_T, solver="dpmpp2m", nfe=40).x, rtol=1e-9, atol=1e-10)
    assert float((sol.x - ref).pow(2).mean().sqrt()) < 0.02


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mixture_models_stay_finite_in_half_precision(dtype):
    """The exact ε is computed in float32 for half states (x̄²/(s² + σ̄²) passes 65504 at the noisy end)."""
    from diffsolve.problems import get

    prob = get("gmm-64")
    sched = ds.VPLinear()
    model = prob.model(sched, dtype=dtype)
    x_T = prob.x_T(32, 0, sched, dtype=dtype)
    sol = ds.sample(model, x_T, solver="dpmpp2m", nfe=10)
    ref = prob.reference(prob.x_T(32, 0, sched), sched)
    assert sol.x.dtype == dtype and bool(torch.isfinite(sol.x).all())
    assert float((sol.x.double() - ref).pow(2).mean().sqrt()) < 0.05


# ---- the shipped flow-trained toy network ---------------------------------------------------------------------
def test_toy_flow_checkpoint_is_a_velocity_model_near_the_ring():
    from diffsolve import nets
    from diffsolve.bench.metrics import sliced_w2

    model = nets.load_pretrained("toy-2d-flow", dtype=torch.float64)
    assert isinstance(model, ds.FlowModel) and model.schedule == ds.Flow()
    s = model.schedule
    x0 = nets.toy_2d(2000, 99).double()
    g = torch.Generator().manual_seed(0)
    # measured on the shipped checkpoint: ε RMS 0.037 at t = 0.3, 0.0042 at t = 0.7; SW2 0.063 with dpmpp2m
    # at 30 NFE against 0.065 between two independent 2,000-point data sets
    for t, tol in ((0.3, 0.1), (0.7, 0.02)):  # ε of the net against the ring's exact ε = −σ ∇log p_t
        a, sig = float(s.alpha(t)), float(s.sigma(t))
        xt = (a * x0 + sig * torch.randn(x0.shape, generator=g, dtype=F64)).requires_grad_(True)
        (score,) = torch.autograd.grad(nets.toy_2d_logp(xt, a, sig).sum(), xt)
        rms = float(((model.eps(xt.detach(), t) + sig * score) ** 2).mean().sqrt())
        assert rms < tol, (t, rms)
    from diffsolve.problems import get

    prob = get("toy-2d-flow")
    x_T = prob.x_T(2000, 7)
    sol = ds.sample(prob.model(), x_T, solver="dpmpp2m", nfe=30)
    assert sliced_w2(sol.x, prob.samples(2000, 3)) < 0.15


def test_toy_flow_problem_on_a_vp_schedule_is_the_same_ode():
    """The velocity net on VPLinear (same λ, x rescaled by α_flow/α_vp) gives the Flow solve's x̄ on one σ̄ grid."""
    from diffsolve.problems import get

    prob = get("toy-2d-flow")
    vp, flow = ds.VPLinear(), prob.default_schedule()
    sb = torch.exp(torch.linspace(torch.log(vp.sigma_bar(0.95)), torch.log(vp.sigma_bar(0.01)), 11, dtype=F64))
    xbar_T = torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(4)) * float(sb[0])
    out = []
    for sched in (vp, flow):
        grid = ds.grids.custom(sched, sched.t_from_sigma_bar(sb))
        a0, a1 = float(sched.alpha(grid.t[0])), float(sched.alpha(grid.t[-1]))
        sol = ds.solve(ds.ode(prob.model(sched), "lambda"), xbar_T * a0, grid, "dpmpp2m")
        out.append(sol.x / a1)
    assert torch.allclose(out[0], out[1], rtol=1e-6, atol=1e-6), float((out[0] - out[1]).abs().max())
