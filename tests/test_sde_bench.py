"""The 'sde' cell kind: strong error on one Brownian path, weak errors against exact moments and samples."""

from __future__ import annotations

import dataclasses
import math

import torch

from diffsolve.bench import Inputs, expand_run, run_cell
from diffsolve.bench.stochastic import exact_moments, moment_errors, strong_weak_markdown

F64 = torch.float64


def _cells(**run):
    base = dict(problem="gmm-2d", schedule="linear", n=64, seeds=[0], grids=["logsnr"], variables=["t"],
                kind="sde", params={"ref_steps": 64})
    return expand_run({**base, **run})


def test_exact_moments_match_exact_samples(gmm2d) -> None:
    """The closed-form mean and covariance of p_{t_end} agree with 40000 exact samples (3 standard errors)."""
    cell = _cells(solvers=["ddpm"], nfe=[4])[0]
    inputs = Inputs()
    mean, cov = exact_moments(cell, inputs)
    prob = gmm2d
    sched = inputs.schedule(cell)
    n = 40000
    x = prob.samples(n, 5, sched, sched.t_min)
    mean_err, cov_err = moment_errors(x, mean, cov)
    d = mean.numel()
    mean_se = math.sqrt(float(torch.diagonal(cov).mean()) / n)
    diag = torch.diagonal(cov)
    cov_se = math.sqrt(float((torch.outer(diag, diag) + cov**2).sum()) / n) / d
    assert mean_err < 3 * mean_se and cov_err < 3 * cov_se, (mean_err, mean_se, cov_err, cov_se)
    assert moment_errors(x, x.mean(0), torch.cov(x.T)) == (0.0, 0.0)


def test_sde_cell_strong_error_is_measured_on_the_reference_path() -> None:
    """The reference solver on the reference grid reproduces the reference exactly (same x_T, same path);
    other solvers' strong errors fall with NFE; weak errors come with their floors."""
    inputs = Inputs()
    same = run_cell(_cells(solvers=["srk"], nfe=[128], grids=["time"])[0], inputs)
    assert same["status"] == "ok", same["error"]
    assert same["rmse"] == 0.0 and same["nfe"] == 128 and same["order_theory"] == 1.5
    recs = [run_cell(c, inputs) for c in _cells(solvers=["euler_maruyama"], nfe=[8, 32])]
    assert all(r["status"] == "ok" for r in recs), [r["error"] for r in recs]
    assert recs[1]["rmse"] < recs[0]["rmse"]
    for key in ("sw2", "sw2_floor", "mean_err", "cov_err", "mean_err_floor", "cov_err_floor", "ref_err"):
        assert all(r[key] is not None and r[key] >= 0 for r in recs), key
    table = strong_weak_markdown(recs + [same])
    assert "fitted order" in table and "| euler_maruyama / logsnr / n=64 |" in table


def test_sde_cell_rejects_wrong_settings() -> None:
    cell = _cells(solvers=["ddpm"], nfe=[4], variables=["sigma"])[0]
    assert cell.variable == "t"  # a stochastic solver is expanded only into the variable it declares
    bad_var = run_cell(dataclasses.replace(cell, variable="sigma"), Inputs())
    assert bad_var["status"] == "failed" and "variables = ['t']" in bad_var["error"]
    bad_param = run_cell(_cells(solvers=["ddpm"], nfe=[4], params={"ref_step": 4})[0], Inputs())
    assert bad_param["status"] == "failed" and "ref_steps" in bad_param["error"]


def test_grid_path_cells_measure_weak_errors_only() -> None:
    """path='grid' (cheap, grid-dependent noise) gives SW2 and moments but no strong error."""
    rec = run_cell(_cells(solvers=["ddpm"], nfe=[16], params={"path": "grid"})[0], Inputs())
    assert rec["status"] == "ok", rec["error"]
    assert rec["rmse"] is None and rec["sw2"] is not None and rec["mean_err"] is not None
    bad = run_cell(_cells(solvers=["ddpm"], nfe=[16], params={"path": "tree"})[0], Inputs())
    assert bad["status"] == "failed" and "dyadic" in bad["error"]
