"""The bench's metrics against closed forms: per-sample errors and quantiles, mode flips, 1-d and sliced W2, MMD²
with a Gaussian kernel, the Fréchet distance of Gaussians."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from diffsolve.bench import metrics
from diffsolve.errors import DiffsolveError
from diffsolve.problems import GaussianMixture, UserProblem
from diffsolve.schedules import VPLinear

F64 = torch.float64


def _gaussian(n: int, mean: list[float], cov: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, len(mean), generator=g, dtype=F64)
    return torch.tensor(mean, dtype=F64) + z @ torch.linalg.cholesky(cov).T


def test_per_sample_errors_quantiles_and_max():
    """e_i = RMSE per dimension of sample i; quantiles interpolate linearly between order statistics."""
    ref = torch.zeros(5, 4, dtype=F64)
    x = ref + torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0], dtype=F64)[:, None]  # sample i off by i in every coordinate
    x[4, :2] = 0.0  # the last: two coordinates off by 4, two exact → √(2·16/4) = √8
    e = metrics.per_sample_err(x, ref)
    assert torch.allclose(e, torch.tensor([0.0, 1.0, 2.0, 3.0, math.sqrt(8.0)], dtype=F64), rtol=0, atol=1e-15)
    assert metrics.max_err(x, ref) == pytest.approx(3.0, abs=1e-15)
    # sorted errors 0, 1, 2, √8, 3: the median is the 3rd, the 90th percentile 0.6 of the way from √8 to 3
    median, p90 = metrics.err_quantiles(x, ref)
    assert median == pytest.approx(2.0, abs=1e-15)
    assert p90 == pytest.approx(math.sqrt(8.0) + 0.6 * (3.0 - math.sqrt(8.0)), abs=1e-14)
    assert metrics.quantiles(e, [0.0, 1.0]) == pytest.approx([0.0, 3.0], abs=1e-15)


def test_per_sample_errors_are_differentiable_for_a_tuning_objective():
    """d median(e)/dx reaches only the median sample: e_i = ‖x_i − r_i‖/√d, so ∂e_i/∂x_i = (x_i − r_i)/(d e_i)."""
    ref = torch.zeros(3, 2, dtype=F64)
    x = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 3.0]], dtype=F64, requires_grad=True)
    torch.quantile(metrics.per_sample_err(x, ref), 0.5).backward()  # errors 1, √2, 3/√2: the median is sample 1
    expected = torch.zeros(3, 2, dtype=F64)
    expected[1] = torch.tensor([2.0, 0.0], dtype=F64) / (2 * math.sqrt(2.0))
    assert torch.allclose(x.grad, expected, atol=1e-15)


def test_flips_on_a_hand_made_mixture():
    """Two 1-d components at ±1 (std 0.1): a sample's component is the side it ends on; flips count disagreements."""
    mix = GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[-1.0], [1.0]]), torch.tensor([[0.1], [0.1]]))
    sched = VPLinear()
    t = sched.t_min
    alpha = float(sched.alpha(t))
    x = alpha * torch.tensor([[-1.1], [-0.9], [0.8], [1.2], [0.05]], dtype=F64)
    ref = alpha * torch.tensor([[-1.0], [1.0], [1.0], [-1.0], [-0.05]], dtype=F64)
    labels = mix.component_of(x, sched, t)
    assert labels.tolist() == [0, 0, 1, 1, 1]
    assert metrics.flips(labels, mix.component_of(ref, sched, t)) == 3
    # unequal weights move the boundary: the logits differ by log 9 ≈ 2.20 for w = (0.9, 0.1) and by
    # ((1 + x̄)² − (1 − x̄)²)/(2(s² + σ̄²)) ≈ 0.99 at x̄ = 0.005: the heavy side wins there, the right one with
    # equal weights
    near = alpha * torch.tensor([[0.005]], dtype=F64)
    heavy = GaussianMixture(torch.tensor([0.9, 0.1]), mix.means, mix.stds)
    assert mix.component_of(near, sched, t).tolist() == [1] and heavy.component_of(near, sched, t).tolist() == [0]
    with pytest.raises(DiffsolveError, match="one label per sample"):
        metrics.flips(labels, labels[:2])


def test_problems_without_modes_say_none():
    from diffsolve.models import EpsModel

    prob = UserProblem(EpsModel(lambda x, t: x * 0, VPLinear()), shape=(2,), fingerprint="zero")
    assert prob.component_of(torch.zeros(3, 2), VPLinear(), 1e-3) is None
    assert prob.sample_shape == (2,)


def test_one_dimensional_w2_of_unequal_counts_is_the_quantile_integral():
    """a = {0, 1, 2} against b = {0, 1}: F⁻¹ differ by 1 on (1/3, 1/2] and (2/3, 1] → W2² = 1/6 + 1/3 = 1/2;
    the same law with repeated atoms (b = a twice over) is at distance 0; equal counts are the sorted differences."""
    a = torch.tensor([[0.0], [1.0], [2.0]], dtype=F64)
    b = torch.tensor([[0.0], [1.0]], dtype=F64)
    assert float(metrics.sorted_w2_squared(a, b)[0]) == pytest.approx(0.5, abs=1e-15)
    assert float(metrics.sorted_w2_squared(b, a)[0]) == pytest.approx(0.5, abs=1e-15)
    assert float(metrics.sorted_w2_squared(a, torch.cat([a, a]).sort(0).values)[0]) == 0.0
    one = torch.ones(1, 1, dtype=F64)
    assert metrics.sliced_w2(a, b, one) == pytest.approx(math.sqrt(0.5), abs=1e-15)
    with pytest.raises(DiffsolveError, match="equal dimension"):
        metrics.sliced_w2(a, torch.zeros(3, 2, dtype=F64))


def test_sliced_w2_between_gaussians_matches_the_projected_closed_form():
    """θ·X ~ N(θ·μ, θᵀΣθ), so W2²_θ = (θ·(μ1 − μ2))² + (√θᵀΣ1θ − √θᵀΣ2θ)² and SW2² is its mean over θ;
    unequal sample counts (20000 against 15000) use the quantile integral."""
    c1 = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.2]], dtype=F64)
    c2 = torch.diag(torch.tensor([0.3, 1.2, 0.6], dtype=F64))
    mu1, mu2 = [0.0, 1.0, -0.5], [0.5, 0.0, 0.0]
    dirs = metrics.projections(3, 16, seed=1)
    s1 = torch.sqrt(torch.einsum("dk,de,ek->k", dirs, c1, dirs))
    s2 = torch.sqrt(torch.einsum("dk,de,ek->k", dirs, c2, dirs))
    shift = (torch.tensor(mu1, dtype=F64) - torch.tensor(mu2, dtype=F64)) @ dirs
    exact = math.sqrt(float(torch.mean(shift**2 + (s1 - s2) ** 2)))
    got = metrics.sliced_w2(_gaussian(20000, mu1, c1, 0), _gaussian(15000, mu2, c2, 1), dirs)
    assert got == pytest.approx(exact, rel=0.02)


def _gaussian_kernel_mean(mu1: list[float], c1: torch.Tensor, mu2: list[float], c2: torch.Tensor, h: float) -> float:
    """E k(X, Y) for X ~ N(μ1, Σ1), Y ~ N(μ2, Σ2), k = exp(−‖x−y‖²/(2h²)):
    det(I + (Σ1+Σ2)/h²)^(−½) exp(−½ Δᵀ(h²I + Σ1 + Σ2)⁻¹Δ)."""
    s = c1 + c2
    d = torch.tensor(mu1, dtype=F64) - torch.tensor(mu2, dtype=F64)
    eye = torch.eye(len(mu1), dtype=F64)
    return float(torch.linalg.det(eye + s / h**2) ** -0.5 * torch.exp(-0.5 * d @ torch.linalg.solve(h**2 * eye + s, d)))


def test_unbiased_mmd2_matches_the_gaussian_closed_form_and_vanishes_for_equal_laws():
    """MMD² = E k(X,X') + E k(Y,Y') − 2 E k(X,Y) in closed form for Gaussians; the unbiased estimator averaged over
    20 draws lands on it; for equal laws it is 0 within the RMS of the estimator over independent draws."""
    c1 = torch.tensor([[0.5, 0.2], [0.2, 0.4]], dtype=F64)
    c2 = torch.diag(torch.tensor([0.3, 0.7], dtype=F64))
    mu1, mu2, h = [0.0, 0.0], [0.4, -0.2], 0.8
    exact = (_gaussian_kernel_mean(mu1, c1, mu1, c1, h) + _gaussian_kernel_mean(mu2, c2, mu2, c2, h)
             - 2 * _gaussian_kernel_mean(mu1, c1, mu2, c2, h))
    draws = [metrics.mmd2(_gaussian(300, mu1, c1, 2 * s), _gaussian(200, mu2, c2, 2 * s + 1), h) for s in range(20)]
    sd = float(np.std(draws, ddof=1))
    assert exact > 4 * sd  # the laws differ beyond the estimator's noise
    assert float(np.mean(draws)) == pytest.approx(exact, abs=3 * sd / math.sqrt(20))
    null = [metrics.mmd2(_gaussian(300, mu1, c1, 100 + 2 * s), _gaussian(200, mu1, c1, 101 + 2 * s), h)
            for s in range(20)]
    floor = math.sqrt(float(np.mean(np.square(null))))
    assert abs(float(np.mean(null))) < 3 * floor / math.sqrt(20)  # unbiased: mean 0 within its standard error
    assert metrics.mmd2(_gaussian(300, mu1, c1, 500), _gaussian(200, mu1, c1, 501), h) < 3 * floor


def test_median_bandwidth_and_kernel():
    """Points 0, 1, 3 on a line: distances 1, 2, 3, median 2; k = exp(−d²/(2h²))."""
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=F64)
    assert metrics.median_bandwidth(x) == pytest.approx(2.0, abs=1e-15)
    k = metrics.gaussian_kernel(x, x, 2.0)
    assert float(k[0, 2]) == pytest.approx(math.exp(-9 / 8), abs=1e-15) and torch.all(k.diagonal() == 1.0)
    with pytest.raises(DiffsolveError, match="remove the duplicates"):
        metrics.median_bandwidth(torch.zeros(4, 2, dtype=F64))


def test_frechet_distance_of_gaussians_closed_forms():
    """‖μ1−μ2‖² + tr(Σ1 + Σ2 − 2(Σ1Σ2)^½): for commuting (diagonal) covariances Σ(s1 − s2)² per axis; for
    non-commuting ones scipy's sqrtm of Σ1Σ2; for samples the fitted Gaussians' value converges to it."""
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0], dtype=F64), torch.tensor([1.0, 1.0, 0.0], dtype=F64)
    d1, d2 = torch.tensor([1.0, 4.0, 0.25], dtype=F64), torch.tensor([4.0, 1.0, 0.25], dtype=F64)
    fd = metrics.frechet_gaussians(mu1, torch.diag(d1), mu2, torch.diag(d2))
    assert fd == pytest.approx(5.0 + float(((d1.sqrt() - d2.sqrt()) ** 2).sum()), abs=1e-12)  # 5 + 1 + 1 + 0
    c1 = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.2]], dtype=F64)
    c2 = torch.tensor([[0.4, -0.1, 0.05], [-0.1, 1.2, 0.3], [0.05, 0.3, 0.6]], dtype=F64)
    cross = np.real(np.trace(scipy.linalg.sqrtm(c1.numpy() @ c2.numpy())))
    exact = 5.0 + float(torch.trace(c1) + torch.trace(c2)) - 2 * cross
    assert metrics.frechet_gaussians(mu1, c1, mu2, c2) == pytest.approx(exact, abs=1e-12)
    assert metrics.frechet_gaussians(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-12)
    got = metrics.frechet_distance(_gaussian(40000, mu1.tolist(), c1, 3), _gaussian(40000, mu2.tolist(), c2, 4))
    assert got == pytest.approx(exact, rel=0.01)
    with pytest.raises(DiffsolveError, match="at least 2 samples"):
        metrics.frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))
