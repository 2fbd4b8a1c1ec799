"""Gaussian-mixture problem: exact ε, x̂0, densities, samples and the float64 reference flow."""

from __future__ import annotations

import math

import pytest
import torch

import diffsolve as ds
from diffsolve import problems
from diffsolve.bench.metrics import rmse
from diffsolve.errors import DiffsolveError
from diffsolve.problems import GaussianMixture

F64 = torch.float64
SCHEDULES = [ds.VPLinear(), ds.VPCosine(), ds.DiscreteDDPM(), ds.EDM()]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_one_component_eps_and_x0_match_closed_form(schedule, one_gaussian):
    """One Gaussian: ε = σ (x − α μ)/(α² s² + σ²) and x̂0 = μ + α s² (x − α μ)/(α² s² + σ²)."""
    gm = one_gaussian
    t = torch.tensor([0.3 * schedule.t_min + 0.7 * schedule.t_max, schedule.t_min, schedule.t_max], dtype=F64)
    x = torch.randn(3, gm.dim, dtype=F64, generator=torch.Generator().manual_seed(1)) * 2
    a, sg = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
    v = a**2 * gm.var + sg**2
    eps = sg * (x - a * gm.means) / v
    x0 = gm.means + a * gm.var * (x - a * gm.means) / v
    torch.testing.assert_close(gm.eps(x, t, schedule), eps, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gm.x0(x, t, schedule), x0, rtol=1e-10, atol=1e-10)
    # the Model view gives the same ε through the time_input hook (continuous float64 t)
    model = gm.model(schedule)
    for i in range(3):
        torch.testing.assert_close(model.eps(x[i : i + 1], t[i]), eps[i : i + 1], rtol=1e-12, atol=1e-12)
    assert model.nfe == 3


def test_exact_eps_is_minus_sigma_times_autograd_score(gmm64):
    """ε(x, t) = −σ_t ∇_x log p_t(x) for the 64-d mixture, checked by autograd of the log-density."""
    gm, sched = gmm64, ds.VPLinear()
    for t in (0.002, 0.05, 0.3, 0.9):
        x = gm.samples(16, 3, sched, t).requires_grad_(True)
        (score,) = torch.autograd.grad(gm.log_prob(x, t, sched).sum(), x)
        torch.testing.assert_close(gm.eps(x.detach(), t, sched), -float(sched.sigma(t)) * score, rtol=1e-9, atol=1e-9)


def test_marginal_log_density_matches_direct_formula_and_integrates_to_one(gmm2d):
    """log p_t equals a direct per-component sum; in 2-d, p_t integrates to 1 on a grid."""
    gm, sched, t = gmm2d, ds.VPCosine(), 0.2
    a, s = float(sched.alpha(t)), float(sched.sigma(t))
    x = gm.samples(50, 0, sched, t)
    direct = torch.zeros(50, dtype=F64)
    for w, mu, sd in zip(gm.weights, gm.means, gm.stds):
        var = a**2 * sd**2 + s**2
        dens = torch.exp(-0.5 * ((x - a * mu) ** 2 / var).sum(1)) / torch.sqrt((2 * math.pi * var).prod())
        direct += w * dens
    torch.testing.assert_close(gm.log_prob(x, t, sched), torch.log(direct), rtol=1e-12, atol=1e-12)
    u = torch.linspace(-4, 4, 801, dtype=F64)
    xx, yy = torch.meshgrid(u, u, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    mass = torch.exp(gm.log_prob(pts, t, sched)).sum() * (u[1] - u[0]) ** 2
    assert abs(float(mass) - 1.0) < 1e-6


def test_samples_have_the_marginal_moments(gmm2d):
    """Exact samples of p_t: the mean α Σ w μ and the covariance of the mixture (Monte Carlo, 4 SE)."""
    gm, sched, t = gmm2d, ds.VPLinear(), 0.4
    a, s = float(sched.alpha(t)), float(sched.sigma(t))
    x = gm.samples(200_000, 5, sched, t)
    mean = a * (gm.weights[:, None] * gm.means).sum(0)
    second = (gm.weights[:, None] * (gm.var + gm.means**2)).sum(0) * a**2 + s**2
    var = second - mean**2
    se = torch.sqrt(var / x.shape[0])
    assert bool(((x.mean(0) - mean).abs() < 4 * se).all())
    assert bool(((x.var(0) - var).abs() < 0.02 * var).all())
    # the data log-density at the data is the t → 0 limit of the VP formula
    x0 = gm.samples(10, 1)
    torch.testing.assert_close(gm.log_prob_data(x0), gm.log_prob_bar(x0, 0.0))


@pytest.mark.parametrize("schedule", [ds.VPLinear(), ds.EDM()], ids=repr)
def test_one_component_reference_matches_closed_form_flow(schedule, one_gaussian):
    """x̄(σ̄) = μ + (x̄_T − μ) √(s² + σ̄²)/√(s² + σ̄_T²) (exact_flow): the dopri8 reference reproduces it to
    ≤ 1e-8, on the whole range and on a sub-interval; exact_flow refuses a mixture of several components."""
    gm = one_gaussian
    x_T = gm.x_T(8, 0, schedule)
    err = (gm.reference(x_T, schedule) - gm.exact_flow(x_T, schedule)).abs().max()
    assert float(err) <= 1e-8
    t0, t1 = 0.7 * schedule.t_max + 0.3 * schedule.t_min, 0.2 * schedule.t_max + 0.8 * schedule.t_min
    part = gm.reference(x_T, schedule, t0, t1) - gm.exact_flow(x_T, schedule, t0, t1)
    assert float(part.abs().max()) <= 1e-8
    # the flow is the identity over an empty interval and composes over two halves
    torch.testing.assert_close(gm.exact_flow(x_T, schedule, t0, t0), x_T, rtol=1e-14, atol=1e-14)
    mid = gm.exact_flow(x_T, schedule, t0, 0.5 * (t0 + t1))
    torch.testing.assert_close(gm.exact_flow(mid, schedule, 0.5 * (t0 + t1), t1),
                               gm.exact_flow(x_T, schedule, t0, t1), rtol=1e-12, atol=1e-12)
    with pytest.raises(DiffsolveError, match="2 components"):
        GaussianMixture.random(dim=2, components=2).exact_flow(x_T[:, :2], schedule)


def test_reference_is_schedule_independent_and_reports_its_accuracy(gmm2d):
    """Same σ̄ end points on two schedules → same x̄; the tolerance comparison is tiny but not zero."""
    gm = gmm2d
    lin, edm = ds.VPLinear(), ds.EDM(sigma_min=0.02, sigma_max=float(ds.VPLinear().sigma_bar(1.0)))
    x_T = gm.x_T(32, 0, lin)
    t_end = float(lin.t_from_sigma_bar(0.02))
    a_lin = gm.reference(x_T, lin, t_end=t_end) / float(lin.alpha(t_end))
    x_T_edm = x_T / float(lin.alpha(1.0)) * float(edm.alpha(edm.t_max))
    a_edm = gm.reference(x_T_edm, edm) / float(edm.alpha(edm.t_min))
    torch.testing.assert_close(a_lin, a_edm, rtol=1e-8, atol=1e-8)
    acc = gm.reference_error(x_T, lin)
    assert 0.0 < acc < 1e-7


def test_fine_heun_converges_to_the_reference(gmm64, order_of):
    """A second-order solver with many steps approaches the reference: error ratio in (3, 5) per halving,
    i.e. fitted order in (log2 3, log2 5)."""
    gm, sched = gmm64, ds.VPLinear()
    x_T = gm.x_T(16, 1, sched)

    def run(nfe: int) -> ds.Solution:
        sol = ds.sample(gm.model(sched), x_T, solver="heun", nfe=nfe, grid="logsnr", variable="sigma")
        assert sol.nfe == nfe
        return sol

    order, errs = order_of(run, gm.reference(x_T, sched), [200, 400], metric=rmse)
    assert math.log2(3.0) < order < math.log2(5.0), (order, errs)


def test_float32_model_and_registry_errors(gmm2d):
    gm, sched = gmm2d, ds.VPLinear()
    x = gm.x_T(4, 0, sched)
    m32 = gm.model(sched, dtype=torch.float32)
    out = m32.eps(x.float(), 0.5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), gm.eps(x, 0.5, sched), rtol=1e-4, atol=1e-5)
    with pytest.raises(DiffsolveError, match="gmm-64"):
        problems.get("gmm-3")
    with pytest.raises(DiffsolveError, match="shapes"):
        GaussianMixture(torch.ones(2), torch.zeros(2, 3), torch.ones(3, 3))


def test_shared_level_fast_path_matches_per_row_formula(gmm64):
    """ε by matrix products (one σ̄ for the batch) equals the per-row broadcast formula near the data."""
    gm, sched = gmm64, ds.VPLinear()
    for t in (0.001, 0.05, 0.5, 1.0):
        p = ds.make_point(sched, t)
        xbar = gm.samples(64, 2, sched, t) / p.alpha
        per_row = gm.eps_bar(xbar, torch.full((64,), p.sigma_bar, dtype=F64))
        torch.testing.assert_close(gm.eps_bar(xbar, p.sigma_bar), per_row, rtol=1e-11, atol=1e-11)


def test_generic_reference_of_the_model_agrees_with_the_closed_form_flow(gmm2d):
    """Problem.reference (dopri8 on the Model in λ, the fallback for trained nets) = the mixture's own flow."""
    from diffsolve.problems import Problem

    gm, sched = gmm2d, ds.VPCosine()
    x_T = gm.x_T(16, 4, sched)
    generic = Problem.reference(gm, x_T, sched, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(generic, gm.reference(x_T, sched), rtol=1e-7, atol=1e-7)
