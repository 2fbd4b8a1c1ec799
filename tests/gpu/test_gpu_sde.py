"""The SDE samplers on CUDA: finite, exact NFE, the same seed gives the same samples, and the data's moments.

Was benchmarks/sde_gpu_smoke.py (which printed these; measured on an H100: means 0.496–0.505, variances
0.084–0.093 against 0.09).
"""

from __future__ import annotations

import math

import pytest
import torch

import diffsolve as ds
from tests.gaussian import gaussian

pytestmark = pytest.mark.gpu

N, MU, S = 4096, 0.5, 0.3


def test_stochastic_sampler_reaches_the_gaussian_data(stochastic_solver, cuda):
    """From N(0, I) at t = 1, NFE 200, data N(0.5, 0.3² I) in 2-d: mean within 4 standard errors (0.019);
    variance within 10 % of 0.09 (4 standard errors are 2.6 %; DDPM's O(h) variance deficit is ≈ 5 % here)."""
    schedule = ds.VPLinear()
    model = gaussian(2, MU, S).model(schedule)
    x = torch.randn(N, 2, device=cuda, dtype=torch.float64, generator=torch.Generator(cuda).manual_seed(0))
    sol = ds.sample(model, x, solver=stochastic_solver, nfe=200, seed=0)
    again = ds.sample(model, x, solver=stochastic_solver, nfe=200, seed=0)
    assert sol.nfe == 200 and sol.x.device.type == "cuda"
    assert bool(torch.isfinite(sol.x).all())
    assert torch.equal(sol.x, again.x)
    assert float((sol.x.mean(0) - MU).abs().max()) < 4 * S / math.sqrt(N)
    assert float((sol.x.var(0) - S * S).abs().max()) < 0.1 * S * S
