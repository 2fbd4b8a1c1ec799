"""iPNDM and iPNDM-v: hand-computed steps, variable-step exactness, exact NFE, fitted orders."""

from __future__ import annotations

import pytest
import torch

import diffsolve as ds
from diffsolve.bench import metrics
from diffsolve.solvers.exp.coeffs import Node
from diffsolve.solvers.exp.ipndm import FIXED, variable_ab


def test_three_steps_by_hand():
    """x̄1 = x̄0 + h0 ε0; x̄2 = x̄1 + h1 (3ε1 − ε0)/2; x̄3 = x̄2 + h2 (23ε2 − 16ε1 + 5ε0)/12 (warm-up to order 3)."""
    sched = ds.VPLinear()

    def net(x, t):
        return 0.3 * x + t[:, None]  # any smooth ε(x, t)

    model = ds.EpsModel(net, sched)
    grid = ds.grids.logsnr(sched, 3)
    x0 = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sol = ds.solve(ds.ode(model, "sigma"), x0, grid, "ipndm", order=3)
    t, a, sb = grid.t.tolist(), grid.alpha.tolist(), grid.sigma_bar.tolist()
    xb, eps = [x0 / a[0]], []
    for i, c in enumerate([FIXED[1], FIXED[2], FIXED[3]]):
        eps.insert(0, net(xb[-1] * a[i], torch.full((4,), t[i], dtype=torch.float64)))
        xb.append(xb[-1] + (sb[i + 1] - sb[i]) * sum(cj * e for cj, e in zip(c, eps)))
    assert sol.nfe == 3
    torch.testing.assert_close(sol.x, xb[-1] * a[-1], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_variable_step_weights_integrate_polynomials_exactly(k):
    """Σ_j c_j v_j^m = 1/(m+1) for m < k: the weights integrate every polynomial of degree < k over one step."""
    sbar = [3.0, 4.1, 5.5, 7.9][:k]
    history = [Node(alpha=1 / (1 + s * s) ** 0.5, sigma=s / (1 + s * s) ** 0.5, lam=0.0) for s in sbar]
    t = Node(alpha=1 / (1 + 2.2**2) ** 0.5, sigma=2.2 / (1 + 2.2**2) ** 0.5, lam=0.0)
    c = variable_ab(history, t)
    h = 2.2 - sbar[0]
    v = [(s - sbar[0]) / h for s in sbar]
    for m in range(k):
        assert sum(cj * vj**m for cj, vj in zip(c, v)) == pytest.approx(1 / (m + 1), rel=1e-12)
    if k > 1:  # on uniform steps the variable weights are the fixed ones
        uniform = [Node(alpha=1.0, sigma=5.0 - j, lam=0.0) for j in range(k)]
        assert variable_ab(uniform, Node(alpha=1.0, sigma=6.0, lam=0.0)) == pytest.approx(FIXED[k], rel=1e-12)


@pytest.mark.parametrize("solver", ["ipndm", "ipndm_v"])
def test_exact_nfe(solver):
    mix = ds.problems.get("gmm-2d")
    model = mix.model(ds.VPLinear())
    sol = ds.solve(ds.ode(model, "sigma"), mix.x_T(8, 0), ds.grids.logsnr(model.schedule, 7), solver)
    assert sol.nfe == 7


@pytest.mark.parametrize("solver,order,expected,steps", [
    ("ipndm", 4, 2.0, [320, 640, 1280]), ("ipndm_v", 4, 4.0, [160, 320, 640]), ("ipndm_v", 3, 3.0, [160, 320, 640]),
    ("ipndm_v", 2, 2.0, [320, 640, 1280]),
])
def test_fitted_order_on_the_logsnr_grid(solver, order, expected, steps):
    """Fitted on gmm-2d, logSNR grid, in the asymptotic range given per case (ipndm's error ratio per halving is
    2.3, 2.7, 3.4, 3.8 from 40 to 640 steps: it approaches 4 late). Fixed AB weights on a grid that is not
    uniform in σ̄ make an O(h) error in the weights, so ipndm stops at order 2 whatever its `order`."""
    mix, sched = ds.problems.get("gmm-2d"), ds.VPLinear()
    x = mix.x_T(32, 0, sched)
    ref = mix.reference(x, sched)
    model = mix.model(sched)
    errs = [metrics.rmse(ds.solve(ds.ode(model, "sigma"), x, ds.grids.logsnr(sched, n), solver, order=order).x, ref)
            for n in steps]
    p, _ = metrics.fitted_order(steps, errs, last=None)
    assert p == pytest.approx(expected, abs=0.3)
