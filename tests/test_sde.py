"""Stochastic samplers: the shared Brownian path, reverse-time SDE solvers, their moments and strong orders.

Problems with known answers: a Gaussian N(μ, s²I) (exact ε(x, t) = σ(x − αμ)/(α²s² + σ²), exact p_T), a
1-D two-Gaussian mixture (non-linear drift), and the forward VP-SDE (marginals N(α_t x0, σ_t² I)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchsde

import diffsolve as ds
from diffsolve.solvers.base import Solver
from diffsolve.solvers.brownian import brownian_path, grid_path, grid_taus
from diffsolve.solvers.exp.coeffs import Combo, third_order_differences
from diffsolve.solvers.sde_exponential import ReverseSDEExponential

F64 = torch.float64
SCHED = ds.VPLinear()
MU = torch.tensor([0.5, -0.3], dtype=F64)
S = 0.7
STOCHASTIC = ["euler_maruyama", "srk", "ddpm", "sde_dpmpp2m", "sde_dpmpp3m"]


def gaussian_model(schedule: ds.Schedule = SCHED) -> ds.Model:
    """The exact ε of data N(MU, S² I)."""

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        p = ds.make_point(schedule, t[0])
        return (x - p.alpha * MU) * (p.sigma / (p.alpha**2 * S**2 + p.sigma**2))

    return ds.EpsModel(net, schedule)


def mixture_model(means: list[float], sds: list[float], weights: list[float]) -> ds.Model:
    """The exact ε of a 1-D Gaussian mixture: σ Σ_k r_k (x − α m_k)/(α² s_k² + σ²)."""
    m, s, w = (torch.tensor(v, dtype=F64) for v in (means, sds, weights))

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        p = ds.make_point(SCHED, t[0])
        var = p.alpha**2 * s**2 + p.sigma**2
        d = x - p.alpha * m  # (B, K)
        r = torch.softmax(torch.log(w) - 0.5 * d**2 / var - 0.5 * torch.log(var), dim=-1)
        return p.sigma * (r * d / var).sum(-1, keepdim=True)

    return ds.EpsModel(net, SCHED)


def exact_p_T(n: int, seed: int = 0) -> torch.Tensor:
    """n exact samples of p_T for the Gaussian problem: N(α_T μ, (α_T² s² + σ_T²) I)."""
    p = ds.make_point(SCHED, SCHED.t_max)
    z = torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return p.alpha * MU + math.sqrt(p.alpha**2 * S**2 + p.sigma**2) * z


def reverse(model: ds.Model) -> ds.Dynamics:
    return ds.VPSDE(model.schedule).reverse(model)


# ---- the Brownian path -------------------------------------------------------------------------------


def test_path_increments_fine_sum_to_coarse() -> None:
    """One seed, one path: fine-grid increments summed over each coarse step equal the coarse increment."""
    dyn = reverse(gaussian_model())
    coarse, fine = ds.grids.time(SCHED, 6), ds.grids.time(SCHED, 48)
    bm_c = brownian_path(dyn, (5, 2), F64, "cpu", seed=11)
    bm_f = brownian_path(dyn, (5, 2), F64, "cpu", seed=11)
    tc, tf = grid_taus(dyn, coarse), grid_taus(dyn, fine)
    fine_inc = torch.stack([bm_f(a, b) for a, b in zip(tf[:-1], tf[1:])])
    for i in range(coarse.steps):
        summed = fine_inc[8 * i : 8 * (i + 1)].sum(0)
        torch.testing.assert_close(summed, bm_c(tc[i], tc[i + 1]), rtol=0, atol=1e-12)
    # A grid of other nodes (uniform in λ) still sees the same W between the common end points.
    tl = grid_taus(dyn, ds.grids.logsnr(SCHED, 17))
    bm_l = brownian_path(dyn, (5, 2), F64, "cpu", seed=11)
    total = torch.stack([bm_l(a, b) for a, b in zip(tl[:-1], tl[1:])]).sum(0)
    torch.testing.assert_close(total, fine_inc.sum(0), rtol=0, atol=1e-12)
    other = brownian_path(dyn, (5, 2), F64, "cpu", seed=12)
    assert (other(tc[0], tc[1]) - bm_c(tc[0], tc[1])).abs().min() > 0


def test_path_increments_have_brownian_variance() -> None:
    """ΔW over [τ_a, τ_b] has variance τ_b − τ_a (checked over 20000 samples, within 4 standard errors)."""
    dyn = reverse(gaussian_model())
    bm = brownian_path(dyn, (10000, 2), F64, "cpu", seed=3)
    for a, b in ((-1.0, -0.9), (-0.5, -0.49), (-0.2, -0.001)):
        var = bm(a, b).var().item()
        assert abs(var / (b - a) - 1) < 4 * math.sqrt(2 / 20000)


def test_grid_path_is_seeded_and_brownian() -> None:
    """grid_path: the same seed and grid give the same increments, each of variance Δτ (within 4 SE)."""
    dyn = reverse(gaussian_model())
    grid = ds.grids.logsnr(SCHED, 5)
    taus = grid_taus(dyn, grid)
    a = grid_path(dyn, grid, (10000, 2), F64, "cpu", seed=3)
    b = grid_path(dyn, grid, (10000, 2), F64, "cpu", seed=3)
    for lo, hi in zip(taus[:-1], taus[1:]):
        w = a(lo, hi)
        assert torch.equal(w, b(lo, hi))
        assert abs(w.var().item() / (hi - lo) - 1) < 4 * math.sqrt(2 / 20000)


# ---- torchsde stepping -----------------------------------------------------------------------------------


@pytest.mark.parametrize("solver,method,per_step", [("euler_maruyama", "euler", 1), ("srk", "srk", 2)])
def test_direct_stepping_matches_sdeint_and_spends_declared_nfe(solver: str, method: str, per_step: int) -> None:
    """Our loop over torchsde's `step` equals torchsde.sdeint run interval by interval on the same path,
    and spends exactly per_step evaluations per step (sdeint itself spends one more per call)."""
    model = gaussian_model()
    dyn = reverse(model)
    grid = ds.grids.logsnr(SCHED, 7)
    x = exact_p_T(16)
    sol = ds.solve(dyn, x, grid, solver, bm=brownian_path(dyn, tuple(x.shape), F64, "cpu", seed=4))
    assert sol.nfe == per_step * grid.steps == ds.get_solver(solver).nfe_for(grid.steps)

    class Reverse(torch.nn.Module):  # the reverse SDE written independently for torchsde, in τ = −t
        noise_type, sde_type = "diagonal", "ito"

        def f(self, tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return -dyn.drift(y, ds.make_point(SCHED, -float(tau)))

        def g(self, tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return dyn.diffusion(y, ds.make_point(SCHED, -float(tau)))

    bm = brownian_path(dyn, tuple(x.shape), F64, "cpu", seed=4)
    taus, y = grid_taus(dyn, grid), x
    for a, b in zip(taus[:-1], taus[1:]):
        sde = Reverse()
        if method == "srk":
            sde.noise_type = "additive"
            sde.g = lambda tau, y: Reverse.g(sde, tau, y).diag_embed()  # noqa: B023  ((batch, d, d) for 'additive')
        y = torchsde.sdeint(sde, y, torch.tensor([a, b], dtype=F64), bm=bm, method=method, dt=(b - a) * (1 + 1e-9))[-1]
    torch.testing.assert_close(sol.x, y, rtol=1e-12, atol=1e-12)


def test_forward_vpsde_euler_maruyama_marginals() -> None:
    """Forward VP-SDE from x0 at t_min: EM reproduces the exact transition N(α_{t|s} x0, (1 − α_{t|s}²) I),
    α_{t|s} = α_t/α_s, at several t within 4 standard errors (EM's own bias there is below 1 SE at 300 steps)."""
    n = 2000
    x0 = torch.tensor([1.5, -0.5], dtype=F64).expand(n, 2).clone()
    grid = ds.grids.time(SCHED, 300, t_start=SCHED.t_min, t_end=SCHED.t_max)
    sol = ds.solve(ds.VPSDE(SCHED), x0, grid, "euler_maruyama", seed=7, trajectory=True)
    assert sol.nfe == 0
    a0 = ds.make_point(SCHED, SCHED.t_min).alpha
    for i in (30, 75, 150, 300):
        a = ds.make_point(SCHED, grid.t[i]).alpha / a0
        var = 1 - a * a
        xt = sol.trajectory[i]
        assert (xt.mean(0) - a * x0[0]).abs().max() < 4 * math.sqrt(var / n)
        assert (xt.var(0) - var).abs().max() < 4 * var * math.sqrt(2 / (n - 1))


# ---- reverse-time sampling of the Gaussian --------------------------------------------------------------

# Step counts at which each method's discretisation bias in the covariance (measured with 40000 samples)
# is below 1.5 standard errors at n = 2000. DDPM's variance deficit is O(h) with a large constant
# (0.046 at 100 λ-steps): it needs small steps, which is the seed's point.
MOMENT_RUNS = [("euler_maruyama", "time", 100), ("srk", "time", 40), ("ddpm", "logsnr", 200),
               ("sde_dpmpp2m", "logsnr", 50), ("sde_dpmpp3m", "logsnr", 50)]


@pytest.mark.parametrize("solver,grid_name,steps", MOMENT_RUNS)
def test_reverse_sde_reaches_data_moments(solver: str, grid_name: str, steps: int) -> None:
    """From exact samples of p_T, the reverse SDE reaches mean μ and covariance s²I within 4 standard errors."""
    n = 2000
    model = gaussian_model()
    sol = ds.solve(reverse(model), exact_p_T(n), ds.grids.make(grid_name, SCHED, steps), solver, seed=21)
    assert sol.nfe == ds.get_solver(solver).nfe_for(steps)
    x = sol.x
    assert (x.mean(0) - MU).abs().max() < 4 * S / math.sqrt(n)
    cov = torch.cov(x.T)
    assert (torch.diagonal(cov) - S**2).abs().max() < 4 * S**2 * math.sqrt(2 / (n - 1))
    assert abs(cov[0, 1]) < 4 * S**2 / math.sqrt(n - 1)


@pytest.mark.parametrize("solver", STOCHASTIC)
def test_same_seed_same_samples_other_seed_other_samples(solver: str) -> None:
    model = gaussian_model()
    grid = ds.grids.logsnr(SCHED, 6)
    x = exact_p_T(32)
    a = ds.solve(reverse(model), x, grid, solver, seed=5).x
    b = ds.solve(reverse(model), x, grid, solver, seed=5).x
    c = ds.solve(reverse(model), x, grid, solver, seed=6).x
    assert torch.equal(a, b)
    assert (a - c).abs().min() > 0


# ---- strong order ----------------------------------------------------------------------------------------


def fitted_strong_order(
    model: ds.Model, x: torch.Tensor, ref: torch.Tensor, solver: str, grid_name: str, steps: list[int]
) -> tuple[float, list[float]]:
    """Slope of log RMS(x_N − x_ref) against log N; x_ref is a fine solution on the same path (seed 9)."""
    dyn = reverse(model)
    errs = []
    for n in steps:
        out = ds.solve(dyn, x, ds.grids.make(grid_name, SCHED, n), solver, seed=9).x
        errs.append((out - ref).pow(2).mean().sqrt().item())
    return -float(np.polyfit(np.log(steps), np.log(errs), 1)[0]), errs


def srk_reference(model: ds.Model, x: torch.Tensor, steps: int = 1024) -> torch.Tensor:
    """The reverse SDE's solution on the seed-9 path by SRK (strong order 1.5) on a fine uniform-t grid."""
    return ds.solve(reverse(model), x, ds.grids.time(SCHED, steps), "srk", seed=9).x


def test_strong_order_euler_maruyama_gaussian() -> None:
    """EM on the Gaussian's reverse SDE (linear drift, additive noise): strong order 1."""
    model, x = gaussian_model(), exact_p_T(300)
    order, errs = fitted_strong_order(model, x, srk_reference(model, x, 512), "euler_maruyama", "time", [8, 16, 32, 64])
    assert abs(order - 1.0) < 0.3, (order, errs)


@pytest.fixture(scope="module")
def mixture() -> tuple[ds.Model, torch.Tensor, torch.Tensor]:
    """A 1-D two-Gaussian mixture (non-linear drift, additive noise), 300 starting points, the SRK reference."""
    model = mixture_model(means=[-0.6, 0.8], sds=[0.6, 0.8], weights=[0.4, 0.6])
    x = torch.randn(300, 1, dtype=F64, generator=torch.Generator().manual_seed(1))
    return model, x, srk_reference(model, x)


# (solver, grid, steps, theory): SRA1 is strong order 1.5; EM, DDPM and SDE-DPM-Solver++(3M) order 1 (additive noise,
# ΔW alone). The 3M's slope is 1.22 over 16–128 (its third-order deterministic part still shows), 1.04 over 32–256.
ORDER_RUNS = [("srk", "time", [8, 16, 32, 64], 1.5), ("euler_maruyama", "logsnr", [16, 32, 64, 128], 1.0),
              ("ddpm", "logsnr", [16, 32, 64, 128], 1.0), ("sde_dpmpp3m", "logsnr", [32, 64, 128, 256], 1.0)]


@pytest.mark.parametrize("solver,grid_name,steps,theory", ORDER_RUNS)
def test_strong_order_mixture(mixture, solver: str, grid_name: str, steps: list[int], theory: float) -> None:
    """Each method converges to the SRK solution on the same Brownian path at its theoretical strong order."""
    model, x, ref = mixture
    order, errs = fitted_strong_order(model, x, ref, solver, grid_name, steps)
    assert abs(order - theory) < 0.3, (order, errs)


def test_sde_dpmpp2m_converges_strongly_on_the_same_path(mixture) -> None:
    """SDE-DPM-Solver++(2M) converges to the same pathwise solution, at least at order 0.7 (theory: 1, with a
    second-order deterministic part that makes the fitted slope steeper before the asymptotic range)."""
    model, x, ref = mixture
    order, errs = fitted_strong_order(model, x, ref, "sde_dpmpp2m", "logsnr", [16, 32, 64, 128])
    assert order > 0.7 and errs[-1] < 0.02, (order, errs)


# ---- the exponential samplers against diffusers -------------------------------------------------------


def _diffusers_reference(scheduler, steps: int, solver: str, step_kw: dict | None = None, **options: str) -> None:
    """Run a diffusers scheduler with noise taken from our path; compare with our solver on the same grid."""
    ours, theirs = _diffusers_run(scheduler, steps, solver, step_kw, **options)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def _diffusers_run(
    scheduler, steps: int, solver: str | Solver, step_kw: dict | None = None, **options: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(our solver's samples, the diffusers scheduler's) on its timesteps, the noise of both from one path."""
    scheduler.set_timesteps(steps)
    sched = ds.DiscreteDDPM(alphas_cumprod=scheduler.alphas_cumprod.to(F64))
    weight = torch.tensor([[0.7, -0.2], [0.3, 0.9]], dtype=F64)

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ weight + t[:, None] / 1000.0)

    model = ds.EpsModel(net, sched)
    dyn = ds.VPSDE(sched).reverse(model)
    steps_int = scheduler.timesteps.tolist() + [0]
    grid = ds.grids.custom(sched, sched.t_from_step(steps_int))
    x = torch.randn(8, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    bm = brownian_path(dyn, tuple(x.shape), F64, "cpu", seed=13)
    ours = ds.solve(dyn, x, grid, solver, bm=bm, **options).x
    taus, y = grid_taus(dyn, grid), x
    for i, n in enumerate(scheduler.timesteps):
        z = bm(taus[i], taus[i + 1]) / math.sqrt(taus[i + 1] - taus[i])
        eps = net(y, torch.full((8,), float(n), dtype=F64))
        y = scheduler.step(eps, n, y, variance_noise=z, **(step_kw or {})).prev_sample
    return ours, y


def test_ddpm_equals_diffusers_ddim_eta_one() -> None:
    """ddpm is the DDPM posterior step: diffusers' DDIM with η = 1 and the same noise gives the same samples."""
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing")
    _diffusers_reference(scheduler, 10, "ddpm", step_kw={"eta": 1.0})


@pytest.mark.parametrize("solver_type,variant", [("midpoint", "midpoint"), ("heun", "taylor")])
def test_sde_dpmpp2m_equals_diffusers(solver_type: str, variant: str) -> None:
    """sde_dpmpp2m matches diffusers' 'sde-dpmsolver++' (order 2, no lower-order final step) given the same noise."""
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DPMSolverMultistepScheduler(
        algorithm_type="sde-dpmsolver++", solver_order=2, solver_type=solver_type, lower_order_final=False,
        timestep_spacing="trailing", final_sigmas_type="sigma_min",
    )
    _diffusers_reference(scheduler, 10, "sde_dpmpp2m", variant=variant)


class DiffusersThirdOrder(ReverseSDEExponential):
    """sde_dpmpp3m with diffusers' D2 weight α_t((1 − e^{−H} − H)/H² − 1/2) = α_t(−φ₂(−H) − 1/2) in place of
    α_t(1/2 − φ₂(−H)): from the third step on, α_t·D2 less (to test what diffusers computes, not a method)."""

    def build(self, nodes, form, **options):
        plan = super().build(nodes, form, **options)
        for i in range(2, len(plan.steps)):
            s, t = nodes[i], nodes[i + 1]
            if not t.zero:
                d2 = third_order_differences(nodes[i - 2 : i + 1][::-1], t.lam - s.lam)[1]
                step = plan.steps[i]
                step.predict = Combo(step.predict.a, tuple(w - t.alpha * q for w, q in zip(step.predict.w, d2)))
        return plan


@pytest.mark.parametrize("solver_type,warmup,gap", [("heun", "taylor", 0.17), ("midpoint", "midpoint", 0.13)])
def test_diffusers_third_order_sde_is_another_method(solver_type: str, warmup: str, gap: float) -> None:
    """diffusers' 'sde-dpmsolver++' with solver_order=3 is not k-diffusion's 3M SDE (sde_dpmpp3m): it warms up with
    its solver_type (the default 'midpoint'; 3M SDE: 'taylor', diffusers' 'heun'), and from the third step its D2
    weight is α_t(−φ₂(−H) − 1/2), an O(1) weight on D2 = O(h²), where the exact integral of the quadratic is
    2α_t H φ₃(−H) = O(h) and k-diffusion's α_t H φ₃(−H) = α_t(1/2 − φ₂(−H)). Measured here (10 steps): 0.173 (heun)
    and 0.125 (midpoint) relative to its samples; with its D2 weight put in, diffsolve's plan gives them to 1e-5."""
    diffusers = pytest.importorskip("diffusers")

    def scheduler():
        return diffusers.DPMSolverMultistepScheduler(
            algorithm_type="sde-dpmsolver++", solver_order=3, solver_type=solver_type, lower_order_final=False,
            timestep_spacing="trailing", final_sigmas_type="sigma_min",
        )

    ours, theirs = _diffusers_run(scheduler(), 10, "sde_dpmpp3m")
    assert gap - 0.01 < float((ours - theirs).norm() / theirs.norm()) < gap + 0.01
    theirs_in_diffsolve = DiffusersThirdOrder("diffusers-sde-3m", 3, "diffusers' 3rd-order sde-dpmsolver++")
    theirs_in_diffsolve.warmup = warmup
    _diffusers_reference(scheduler(), 10, theirs_in_diffsolve)


# ---- wrong inputs ------------------------------------------------------------------------------------------


def test_wrong_inputs_raise_clear_errors() -> None:
    model = gaussian_model()
    dyn = reverse(model)
    grid = ds.grids.logsnr(SCHED, 4)
    x = exact_p_T(4)
    with pytest.raises(ds.SolverError, match="reverse VP-SDE"):
        ds.solve(ds.VPSDE(SCHED), x, ds.grids.time(SCHED, 4, t_start=SCHED.t_min, t_end=SCHED.t_max), "ddpm")
    with pytest.raises(ds.SolverError, match="variant must be one of 'midpoint', 'taylor', got 'rk4'"):
        ds.solve(dyn, x, grid, "sde_dpmpp2m", variant="rk4")
    with pytest.raises(ds.SolverError, match="solver_type → variant"):
        ds.solve(dyn, x, grid, "sde_dpmpp2m", solver_type="heun")
    with pytest.raises(ds.SolverError, match="takes no option"):
        ds.solve(dyn, x, grid, "ddpm", variant="taylor")
    with pytest.raises(ds.SolverError, match=r"takes no option\(s\) variant, its name fixes them.*sde_dpmpp2m takes"):
        ds.solve(dyn, x, grid, "sde_dpmpp3m", variant="midpoint")
    with pytest.raises(ds.SolverError, match="shape"):
        ds.solve(dyn, x, grid, "euler_maruyama", bm=brownian_path(dyn, (5, 2), F64, "cpu", 0))
    with pytest.raises(ds.SolverError, match="not both"):
        ds.solve(dyn, x, grid, "ddpm", seed=1, bm=brownian_path(dyn, (4, 2), F64, "cpu", 0))
    with pytest.raises(ds.SolverError, match="seed"):
        ds.solve(dyn, x, grid, "srk", seed=-1)
    no_area = torchsde.BrownianInterval(t0=-1.0, t1=-1e-3, size=(4, 2), dtype=F64, entropy=0)
    with pytest.raises(ds.SolverError, match="Lévy area"):
        ds.solve(dyn, x, grid, "srk", bm=no_area)
    with pytest.raises(ds.SolverError, match="covers"):
        short = torchsde.BrownianInterval(t0=-0.5, t1=-1e-3, size=(4, 2), dtype=F64, entropy=0)
        ds.solve(dyn, x, grid, "euler_maruyama", bm=short)

    class Multiplicative(ds.Dynamics):
        stochastic = True

        def drift(self, y: torch.Tensor, p: ds.Point) -> torch.Tensor:
            return -y

        def diffusion(self, y: torch.Tensor, p: ds.Point) -> torch.Tensor:
            return y

    with pytest.raises(ds.SolverError, match="additive"):
        ds.solve(Multiplicative(SCHED, None), x, grid, "srk", seed=0)
