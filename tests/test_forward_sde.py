"""Forward VP-SDE with Euler–Maruyama reproduces the closed-form marginals N(α_t x0, σ_t² I)."""

import torch

import diffsolve as ds


def test_forward_marginals_mean_and_variance():
    schedule = ds.VPLinear()
    n, d = 4000, 3
    x0 = torch.tensor([1.5, -0.5, 0.0], dtype=torch.float64).expand(n, d).clone()
    grid = ds.grids.time(schedule, 200, t_start=schedule.t_min, t_end=schedule.t_max)
    sol = ds.solve(ds.VPSDE(schedule), x0, grid, "euler_maruyama", seed=3, trajectory=True)
    assert sol.nfe == 0
    for i in (40, 100, 200):
        t = float(grid.t[i])
        xt = sol.trajectory[i]
        a, s = float(schedule.alpha(t)), float(schedule.sigma(t))
        mean, var = xt.mean(0), xt.var(0)
        se_mean = s / n**0.5
        se_var = s**2 * (2 / (n - 1)) ** 0.5
        # Euler–Maruyama's own bias at 200 steps is far below these standard errors.
        assert ((mean - a * x0[0]).abs() <= 4 * se_mean).all(), (t, mean, a * x0[0])
        assert ((var - s**2).abs() <= 4 * se_var).all(), (t, var, s**2)
