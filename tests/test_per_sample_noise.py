"""Per-sample seeds: each sample's noise comes from its own seed, so a sample does not depend on its batch.

seed=[s_0, …] (or a 1-D integer tensor) gives row r the Brownian increments of generator 4 s_r + 1 on the grid's
steps (and, for srk, the space-time Lévy area from 4 s_r + 2). Checked: bit-identity alone / in a batch / in another
order for every stochastic solver, the moments of the increments (ΔW ~ N(0, Δτ), U = ∫W has Var Δτ³/3 and
Cov(U, ΔW) = Δτ²/2, steps independent), ddim(η=1) = ddpm on the same per-sample noise, and the refusals.
"""

from __future__ import annotations

import math

import pytest
import torch

import diffsolve as ds
from diffsolve import grids, problems
from diffsolve.errors import SolverError
from diffsolve.solvers.brownian import PerSampleNoise, grid_taus, per_sample_noise

F64 = torch.float64
CASES = [("euler_maruyama", {}), ("srk", {}), ("ddpm", {}), ("sde_dpmpp2m", {}), ("ddim", {"eta": 0.5})]


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
