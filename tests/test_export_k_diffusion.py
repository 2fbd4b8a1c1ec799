"""k-diffusion's samplers on diffsolve's exported sigmas, and diffsolve's samplers with k-diffusion's signature.

A diffsolve model and a k-diffusion denoiser are two views of one x̂0: D(x̄, σ̄) = x̂0(α x̄, t(σ̄)). k-diffusion's
sample_dpmpp_2m / sample_euler / sample_heun on `ds.export.sigmas(grid)` equal ds.solve of the same methods on that
grid, ending at σ_min or (to_zero) at 0 (≤ 1e-10, float64); `k_sampler(solver)` on k-diffusion's Karras sigmas
equals ds.solve on that grid, and its ddim(eta=1), sde_dpmpp2m, sde_dpmpp3m and ipndm_v(order=4) are k-diffusion's
Euler ancestral, DPM++ 2M SDE, DPM++ 3M SDE and LMS (ds.solve of sde_dpmpp3m too).
"""

from __future__ import annotations

import pytest
import torch

import diffsolve as ds
from diffsolve.errors import GridError, SolverError
from diffsolve.export import k_sampler
from tests._kdiffusion import load_sampling

K = load_sampling()
pytestmark = pytest.mark.skipif(K is None, reason="k-diffusion is not installed (pip install --no-deps k-diffusion)")
F64 = torch.float64
PROB = ds.problems.get("gmm-2d")
SCHED = PROB.default_schedule()
MODEL = PROB.model(SCHED, dtype=F64)
X = PROB.x_T(16, 0, SCHED)


def denoiser(model: ds.Model):
    """k-diffusion's view of a diffsolve model: D(x̄, σ̄) = x̂0(α x̄, t(σ̄)), one network call."""
    def d(x_bar: torch.Tensor, sigma: torch.Tensor, **extra) -> torch.Tensor:
        p = ds.make_point(model.schedule, model.schedule.t_from_sigma_bar(sigma[0].to(F64)))
        return model.x0_at(x_bar * p.alpha, p)
    return d


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def solve_bar(grid, solver: str, variable: str, **options) -> torch.Tensor:
    """ds.solve on the grid, returned as x̄ = x/α at the end (x̂0 itself after a step to σ = 0)."""
    x = ds.solve(ds.ode(MODEL, variable), X, grid, solver, **options).x
    return x if options.get("to_zero") else x / float(SCHED.alpha(grid.t[-1]))


CASES = [("sample_dpmpp_2m", "dpmpp2m", "lambda", {"lower_order_final": False}),
         ("sample_euler", "euler", "sigma", {}), ("sample_heun", "heun", "sigma", {})]


@pytest.mark.parametrize("peer,solver,variable,options", CASES, ids=[c[0] for c in CASES])
def test_k_diffusion_on_exported_sigmas_equals_diffsolve(peer, solver, variable, options):
    grid = ds.grids.karras(SCHED, 8)
    sigmas = ds.export.sigmas(grid, SCHED, end="sigma_min")
    x_bar = X / float(SCHED.alpha(grid.t[0]))
    theirs = getattr(K, peer)(denoiser(MODEL), x_bar, sigmas, disable=True)
    assert rel(theirs, solve_bar(grid, solver, variable, **options)) <= 1e-10


@pytest.mark.parametrize("peer,solver,variable,options", CASES, ids=[c[0] for c in CASES])
def test_to_zero_on_exported_sigmas(peer, solver, variable, options):
    """end='zero' appends σ = 0: the last step returns x̂0, as diffsolve's to_zero (Runge–Kutta's included: k-diffusion
    ends Euler and Heun with an Euler step to 0)."""
    grid = ds.grids.logsnr(SCHED, 7)
    x_bar = X / float(SCHED.alpha(grid.t[0]))
    theirs = getattr(K, peer)(denoiser(MODEL), x_bar, ds.export.sigmas(grid, SCHED), disable=True)
    assert rel(theirs, solve_bar(grid, solver, variable, to_zero=True, **options)) <= 1e-10


def karras_sigmas(n: int) -> torch.Tensor:
    """k-diffusion's Karras sigmas over the schedule's range (its ramp in float64, so the ends stay inside)."""
    s_min, s_max = (float(SCHED.sigma_bar(t)) for t in (SCHED.t_min, SCHED.t_max))
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        return K.get_sigmas_karras(n, s_min, s_max)
    finally:
        torch.set_default_dtype(default)


@pytest.mark.parametrize("solver,options", [("ipndm", {}), ("unipc", {}), ("dpmpp3m", {}), ("ipndm_v", {})])
def test_k_sampler_on_karras_sigmas_equals_solve(solver, options):
    sigmas = karras_sigmas(8)
    x_bar = X / float(SCHED.alpha(SCHED.t_from_sigma_bar(sigmas[0])))
    got = k_sampler(solver, **options)(denoiser(MODEL), x_bar, sigmas, disable=True)
    grid = ds.grids.custom(SCHED, SCHED.t_from_sigma_bar(sigmas[:-1]))
    variable = "sigma" if solver.startswith("ipndm") else "lambda"
    assert rel(got, solve_bar(grid, solver, variable, to_zero=True, **options)) <= 1e-10
    # the very same program as ds.solve with the denoiser as an x̂0 model on the EDM schedule (ds.solve's ·α/α at
    # the end aside)
    edm = ds.EDM(sigma_min=float(sigmas[-2]), sigma_max=float(sigmas[0]))
    view = ds.X0Model(denoiser(MODEL), edm, coords="ve")
    same = ds.solve(ds.ode(view, variable), x_bar, ds.grids.custom(edm, sigmas[:-1]), solver, to_zero=True, **options)
    assert rel(got, same.x) <= 1e-14


def test_callback_sees_k_diffusions_dict():
    """ddim = Euler: the same x, i, sigma, sigma_hat and denoised at every step as sample_euler's callback."""
    sigmas = karras_sigmas(6)
    x_bar = X / float(SCHED.alpha(SCHED.t_from_sigma_bar(sigmas[0])))
    ours, theirs = [], []
    k_sampler("ddim")(denoiser(MODEL), x_bar, sigmas, callback=ours.append, disable=True)
    K.sample_euler(denoiser(MODEL), x_bar, sigmas, callback=theirs.append, disable=True)
    assert len(ours) == len(theirs) == 6
    for a, b in zip(ours, theirs):
        assert a["i"] == b["i"] and float(a["sigma"]) == float(b["sigma"]) == float(a["sigma_hat"])
        assert rel(a["x"], b["x"]) <= 1e-10 and rel(a["denoised"], b["denoised"]) <= 1e-10


def test_stochastic_samplers_are_k_diffusions_with_the_same_noise():
    """ddim(eta=1) is sample_euler_ancestral; sde_dpmpp2m is sample_dpmpp_2m_sde (eta=1, midpoint); sde_dpmpp3m is
    sample_dpmpp_3m_sde (eta=1); ipndm_v of order 4 is sample_lms (deterministic)."""
    sigmas = karras_sigmas(7)
    x_bar = X / float(SCHED.alpha(SCHED.t_from_sigma_bar(sigmas[0])))
    noise = [torch.randn(X.shape, generator=torch.Generator().manual_seed(i), dtype=F64) for i in range(7)]

    def sampler():
        i = iter(noise)
        return lambda s, s_next: next(i)

    d = denoiser(MODEL)
    for ours, theirs in ((k_sampler("ddim", eta=1.0), K.sample_euler_ancestral),
                         (k_sampler("sde_dpmpp2m"), K.sample_dpmpp_2m_sde),
                         (k_sampler("sde_dpmpp3m"), K.sample_dpmpp_3m_sde)):
        a = ours(d, x_bar, sigmas, disable=True, noise_sampler=sampler())
        b = theirs(d, x_bar, sigmas, disable=True, noise_sampler=sampler())
        assert rel(a, b) <= 1e-10, theirs.__name__
    a = k_sampler("ipndm_v", order=4)(d, x_bar, sigmas, disable=True)
    assert rel(a, K.sample_lms(d, x_bar, sigmas, disable=True)) <= 1e-10


@pytest.mark.parametrize("levels", [2, 3, 4, 9])
def test_sde_dpmpp3m_solve_is_sample_dpmpp_3m_sde(levels):
    """ds.solve of sde_dpmpp3m on the reverse SDE (generator=: torch.randn per step) is k-diffusion's
    sample_dpmpp_3m_sde (eta=1) on Karras sigmas ending in 0, given the same z: the VP step α_t × k-diffusion's x̄ step
    (sde_exponential's docstring), its warm-up (ddpm, then 2M 'taylor') included — 1, 2, 3 and 8 steps before σ = 0."""
    sigmas = karras_sigmas(levels)
    x_bar = X / float(SCHED.alpha(SCHED.t_from_sigma_bar(sigmas[0])))
    g = torch.Generator().manual_seed(7)
    theirs = K.sample_dpmpp_3m_sde(denoiser(MODEL), x_bar, sigmas, disable=True,
                                   noise_sampler=lambda s, s_next: torch.randn(X.shape, generator=g, dtype=F64))
    grid = ds.grids.custom(SCHED, SCHED.t_from_sigma_bar(sigmas[:-1]))
    sde = ds.VPSDE(SCHED).reverse(MODEL)
    ours = ds.solve(sde, X, grid, "sde_dpmpp3m", to_zero=True, generator=torch.Generator().manual_seed(7))
    assert ours.nfe == levels and rel(ours.x, theirs) <= 1e-10
    if levels > 3:  # the third-order steps matter: 2M 'taylor' throughout is another sampler
        other = ds.solve(sde, X, grid, "sde_dpmpp2m", variant="taylor", to_zero=True,
                         generator=torch.Generator().manual_seed(7))
        assert rel(other.x, theirs) > 1e-3


def test_wrong_use_is_refused_with_the_fix():
    with pytest.raises(SolverError, match=r"'heun' calls the model 2 times per step.*use one of"):
        k_sampler("heun")
    with pytest.raises(SolverError, match="sigmas decide the end"):
        k_sampler("dpmpp2m", to_zero=True)
    with pytest.raises(GridError, match=r"strictly descending \(noise → data\).*flip"):
        k_sampler("dpmpp2m")(denoiser(MODEL), X, torch.tensor([0.1, 1.0, 10.0]), disable=True)
