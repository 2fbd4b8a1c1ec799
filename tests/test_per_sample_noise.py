"""Per-sample seeds: each sample's noise comes from its own seed, so a sample does not depend on its batch.

seed=[s_0, …] (or a 1-D integer tensor) gives row r the Brownian increments of the counter-based normals of key
(s_r, stream 1) on the grid's steps (and, for srk, the space-time Lévy area from stream 2). Checked: the hash is
SplitMix64's finaliser, normals are pure functions of (seed, stream, step, coordinate), bit-identity alone / in a batch
/ in another order for every stochastic solver, the normals' distribution (moments, Kolmogorov–Smirnov) and
independence (neighbouring rows, seeds, steps, coordinates, streams), the moments of the increments (ΔW ~ N(0, Δτ),
U = ∫W has Var Δτ³/3 and Cov(U, ΔW) = Δτ²/2, steps independent), ddim(η=1) = ddpm on the same per-sample noise, and
the refusals.
"""

from __future__ import annotations

import math

import pytest
import torch

import diffsolve as ds
from diffsolve import grids, problems
from diffsolve.errors import SolverError
from diffsolve.solvers.brownian import (
    H_STREAM,
    W_STREAM,
    PerSampleNoise,
    grid_taus,
    mix64_,
    per_sample_noise,
    sample_keys,
    step_normals,
)

F64 = torch.float64
CASES = [("euler_maruyama", {}), ("srk", {}), ("ddpm", {}), ("sde_dpmpp2m", {}), ("sde_dpmpp3m", {}),
         ("ddim", {"eta": 0.5})]


@pytest.fixture(scope="module")
def gmm():
    prob = problems.resolve("gmm-2d")
    sched = prob.default_schedule()
    return prob.model(sched, dtype=F64), prob.x_T(8, 0, sched)


@pytest.mark.parametrize("solver,opts", CASES, ids=[c[0] for c in CASES])
def test_sample_alone_equals_sample_in_batch(gmm, solver, opts):
    model, x = gmm
    seeds = [5, 9, 11, 100, 3, 7, 8, 1]
    full = ds.sample(model, x, solver=solver, nfe=12, seed=torch.tensor(seeds), **opts).x
    for i in (0, 5, 7):
        alone = ds.sample(model, x[i:i + 1], solver=solver, nfe=12, seed=[seeds[i]], **opts).x
        assert torch.equal(alone[0], full[i])
    perm = [6, 2, 4, 0]
    other = ds.sample(model, x[perm], solver=solver, nfe=12, seed=[seeds[i] for i in perm], **opts).x
    assert torch.equal(other, full[perm])
    again = ds.sample(model, x, solver=solver, nfe=12, seed=[s + 1 for s in seeds], **opts).x
    assert not torch.equal(again, full)  # the seeds do fix the noise


def test_ddim_eta_one_is_ddpm_on_per_sample_noise(gmm):
    model, x = gmm
    seeds = list(range(8))
    a = ds.sample(model, x, solver="ddim", eta=1.0, nfe=10, seed=seeds).x
    b = ds.sample(model, x, solver="ddpm", nfe=10, seed=seeds).x
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_increments_are_brownian():
    """ΔW/√Δτ standard normal and independent across steps; U = Δτ(ΔW/2 + H) has the moments of ∫W dτ."""
    sched = ds.VPLinear()
    dyn = ds.VPSDE(sched).reverse(problems.resolve("gmm-2d").model(sched))
    g = grids.build("logsnr", sched, 6)
    taus = grid_taus(dyn, g)
    n = 20000
    path = per_sample_noise(dyn, g, torch.zeros(n // 4, 4, dtype=F64), list(range(n // 4)))
    zs = []
    for i in range(g.steps):
        h = taus[i + 1] - taus[i]
        dw, u = path(taus[i], taus[i + 1], return_U=True)
        dw, u = dw.flatten(), u.flatten()
        se = 5 / math.sqrt(n)  # five standard errors
        assert abs(dw.mean() / math.sqrt(h)) < se
        assert abs(dw.var() / h - 1) < 5 * math.sqrt(2 / n)
        assert abs((u * u).mean() / (h**3 / 3) - 1) < 0.1
        assert abs((u * dw).mean() / (h**2 / 2) - 1) < 0.1
        zs.append(dw / math.sqrt(h))
    corr = torch.corrcoef(torch.stack(zs))
    assert (corr - torch.eye(g.steps, dtype=F64)).abs().max() < 5 / math.sqrt(n)


def test_blocks_do_not_depend_on_batch():
    """A row's numbers come in blocks of max(1, 4096 // dim) steps: the same for any batch, across block ends."""
    taus = [float(t) for t in torch.linspace(0, 1, 301, dtype=F64)]
    big = PerSampleNoise(taus, [3, 4, 5], 64, F64, "cpu")
    small = PerSampleNoise(taus, [4], 64, F64, "cpu")
    assert big.block == 64
    for i in range(300):  # crosses four block ends
        assert torch.equal(big(taus[i], taus[i + 1])[1], small(taus[i], taus[i + 1])[0])


@pytest.mark.parametrize("seed,match", [
    ([1, 2, 3], "3 per-sample seeds for a batch of 8"),
    ([-1] * 8, r"integers in \[0, 2\^30\)"),
    ([2**30] * 8, r"integers in \[0, 2\^30\)"),
    (torch.zeros(8), "1-D integer tensor"),
    ([], "non-empty list"),
])
def test_bad_seeds_are_refused(gmm, seed, match):
    model, x = gmm
    with pytest.raises(SolverError, match=match):
        ds.sample(model, x, solver="euler_maruyama", nfe=4, seed=seed)


def test_off_grid_queries_are_refused():
    taus = [0.0, 0.5, 1.0]
    path = PerSampleNoise(taus, [1], 4096, F64, "cpu")  # one step per block
    with pytest.raises(SolverError, match="on the grid's steps only"):
        path(0.0, 0.25)
    path(0.5, 1.0)
    with pytest.raises(SolverError, match="in step order"):
        path(0.0, 0.5)


def splitmix64_finaliser(z: int) -> int:
    """Reference: SplitMix64's output function on a 64-bit word, in Python integers."""
    z %= 2**64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 % 2**64
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB % 2**64
    return z ^ (z >> 31)


def test_mix64_is_splitmix64():
    words = [0, 1, 2, 3, 12345, 2**32 + 7, 2**63 - 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15]
    signed = [w - 2**64 if w >= 2**63 else w for w in words]
    got = mix64_(torch.tensor(signed, dtype=torch.int64)).tolist()
    assert [g % 2**64 for g in got] == [splitmix64_finaliser(w) for w in words]
    assert splitmix64_finaliser(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF  # SplitMix64(seed 0)'s first output


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_normals_are_pure_functions_of_seed_step_and_coordinate(dtype):
    keys = sample_keys([7, 0, 1, 2**30 - 1], W_STREAM, "cpu")
    whole = step_normals(keys, 0, 9, 5, dtype)
    assert whole.shape == (9, 4, 5) and whole.dtype == dtype
    part = step_normals(keys[[2, 0]], 3, 4, 5, dtype)  # other rows, other order, other first step
    assert torch.equal(part, whole[3:7][:, [2, 0]])
    assert torch.equal(step_normals(keys[1:2], 8, 1, 5, dtype)[0, 0], whole[8, 1])
    assert not torch.equal(whole[:, 1], whole[:, 2])  # seeds 0 and 1 differ


def ks_statistic(z: torch.Tensor) -> float:
    """sup |F_n − Φ| of the sample z against N(0, 1)."""
    x, _ = z.to(F64).flatten().sort()
    n = x.numel()
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    i = torch.arange(1, n + 1, dtype=F64)
    return max((i / n - cdf).max().item(), (cdf - (i - 1) / n).max().item())


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_normals_are_standard_normal(dtype):
    """Moments 0, 1, 0, 3 within five standard errors; KS distance below its 0.1 % critical value 1.95/√n."""
    z = step_normals(sample_keys(list(range(64)), W_STREAM, "cpu"), 0, 512, 8, dtype).to(F64).flatten()
    n = z.numel()  # 262144
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs((z**2).mean() - 1) < 5 * math.sqrt(2 / n)
    assert abs((z**3).mean()) < 5 * math.sqrt(15 / n)
    assert abs((z**4).mean() - 3) < 5 * math.sqrt(96 / n)
    assert ks_statistic(z) < 1.95 / math.sqrt(n)
    assert z.abs().max() > 4  # the tails are there (P(max |z| < 4) ≈ e^{-16.6})


def test_neighbours_are_uncorrelated():
    """Rows of seeds s and s+1, steps i and i+1, coordinates j and j+1, streams W and H: |corr| < 5/√n."""
    seeds = list(range(16))
    w = step_normals(sample_keys(seeds, W_STREAM, "cpu"), 0, 1024, 16, F64)  # (steps, rows, dim)
    h = step_normals(sample_keys(seeds, H_STREAM, "cpu"), 0, 1024, 16, F64)

    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        return torch.corrcoef(torch.stack((a.flatten(), b.flatten())))[0, 1].item()

    pairs = {
        "rows (seeds s, s+1)": (w[:, :-1], w[:, 1:]),
        "steps (i, i+1)": (w[:-1], w[1:]),
        "coordinates (j, j+1)": (w[..., :-1], w[..., 1:]),
        "streams (W, H)": (w, h),
        "row 0 of W vs row 1 of H": (w[:, 0], h[:, 1]),
    }
    for name, (a, b) in pairs.items():
        assert abs(corr(a, b)) < 5 / math.sqrt(a.numel()), name
    z0, z1 = w[:, 0].flatten(), w[:, 1].flatten()  # seeds 0 and 1: also their squares (a nonlinear dependence)
    assert abs(corr(z0**2, z1**2)) < 5 / math.sqrt(z0.numel())
    assert not torch.equal(w, h)
