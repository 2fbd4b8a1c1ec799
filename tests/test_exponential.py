"""Exponential integrators: φ-functions, exact identities, the published 3M's order, counted NFE, finiteness
on every schedule × grid, and clear errors for wrong inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import diffsolve as ds
from diffsolve import grids
from diffsolve.errors import SolverError
from diffsolve.solvers.exp.coeffs import Node, lagrange
from diffsolve.solvers.exp.phi import phi
from diffsolve.solvers.exp.singlestep import orders_for
from tests._expo_gmm import MixtureEps

F64 = torch.float64
EXP_SOLVERS = ["ddim", "dpm2", "dpm3", "dpmpp2s", "dpm2m", "dpm3m", "dpmpp2m", "dpmpp3m", "deis", "unipc"]


# ---- φ-functions -------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_phi_recurrence_and_limits(k):
    """φ_k(z) = z φ_{k+1}(z) + 1/k! holds to round-off on both sides of the series/expm1 switch and at tiny z."""
    for z in (1e-12, -1e-9, 1e-5, 0.3, -0.7, 0.999, 1.001, -1.5, 4.0, -12.0, 30.0):
        lhs, rhs = phi(k, z), z * phi(k + 1, z) + 1.0 / math.factorial(k)
        scale = abs(z * phi(k + 1, z)) + 1.0 / math.factorial(k)  # the size of the terms added on the right
        assert abs(lhs - rhs) <= 4e-16 * scale, (k, z, lhs, rhs)
    assert phi(k, 0.0) == 1.0 / math.factorial(k)
    assert phi(k, -math.inf) == 0.0


def test_phi_matches_quadrature():
    """φ_k(z) = ∫_0^1 e^{(1−θ)z} θ^{k−1}/(k−1)! dθ (Gauss–Legendre, exact to ~1e-15 for these z)."""
    nodes, weights = np.polynomial.legendre.leggauss(40)
    theta, w = (nodes + 1) / 2, weights / 2
    for k in (1, 2, 3):
        for z in (1e-7, 0.05, -0.5, 2.0, -8.0):
            quad = float(np.sum(w * np.exp((1 - theta) * z) * theta ** (k - 1))) / math.factorial(k - 1)
            assert phi(k, z) == pytest.approx(quad, rel=1e-13)


def test_lagrange_weights_integrate_polynomials_exactly():
    """The multistep weights integrate ε = polynomial in λ of degree < k exactly: Σ w_j λ_j^n = α_t ∫ λ^n dσ̄."""
    def node(lam: float) -> Node:
        a = 1 / math.sqrt(1 + math.exp(-2 * lam))
        return Node(a, a * math.exp(-lam), lam)
    history, t = [node(-1.0), node(-1.4), node(-2.1)], node(-0.4)
    combo = lagrange("noise", history, t)
    nodes, weights = np.polynomial.legendre.leggauss(40)
    rs, rt = math.exp(1.0), math.exp(0.4)  # σ̄ = e^{−λ}
    r = (rt - rs) / 2 * nodes + (rt + rs) / 2
    for n in range(3):
        exact = t.alpha * float(np.sum(weights * (rt - rs) / 2 * (-np.log(r)) ** n))
        got = sum(w * p.lam**n for w, p in zip(combo.w, history))
        assert got == pytest.approx(exact, rel=1e-12)


# ---- exact identities -----------------------------------------------------------------------------------
def _gmm(schedule, batch=6, dtype=F64):
    net = MixtureEps(schedule, dim=16, components=4, scale=0.1, seed=1)
    return ds.wrap(net, schedule, "eps"), net.prior(batch, seed=2).to(dtype)


@pytest.mark.parametrize("schedule", [ds.VPLinear(), ds.DiscreteDDPM()], ids=["linear", "discrete"])
def test_ddim_is_one_euler_step_in_sigma_bar(schedule):
    model, x = _gmm(schedule)
    grid = grids.time(schedule, 7)
    ours = ds.solve(ds.ode(model, "lambda"), x, grid, "ddim")
    euler = ds.solve(ds.ode(model, "sigma"), x, grid, "euler")
    assert torch.allclose(ours.x, euler.x, rtol=1e-12, atol=1e-12)


def test_step_to_zero_returns_the_denoised_estimate():
    schedule = ds.VPLinear()
    model, x = _gmm(schedule)
    grid = grids.logsnr(schedule, 6)
    for solver in ("ddim", "dpmpp2m", "unipc", "dpm2m", "deis"):
        sol = ds.solve(ds.ode(model, "lambda"), x, grid, solver, to_zero=True, trajectory=True)
        x_last = sol.trajectory[-2]  # the grid's end; the trajectory ends with x̂0 itself
        x0 = model.x0(x_last, grid.t[-1])
        assert sol.nfe == 7 and sol.trajectory.shape[0] == grid.steps + 2 and torch.equal(sol.trajectory[-1], sol.x)
        # the noise form returns (x − σ ε)/α of the (corrected) last state: exactly x̂0 there
        if solver in ("ddim", "dpm2m", "deis", "dpmpp2m"):
            assert torch.allclose(sol.x, x0, rtol=1e-12, atol=1e-12), solver


def test_eta_one_has_ddpm_posterior_variance():
    """Stochastic DDIM's added noise: std = η σ_t √(1 − e^{−2h}); η = 1 is DDPM's posterior std."""
    schedule = ds.VPLinear()
    model, _ = _gmm(schedule)
    x = torch.zeros(20000, 16, dtype=F64)
    grid = grids.custom(schedule, [0.5, 0.4])
    sde = ds.VPSDE(schedule).reverse(model)  # eta > 0 is stochastic: it samples the reverse SDE
    a = ds.solve(sde, x, grid, "ddim", eta=1.0, seed=3).x
    b = ds.solve(ds.ode(model, "lambda"), x, grid, "ddim").x
    ab_s, ab_t = float(schedule.alpha(0.5)) ** 2, float(schedule.alpha(0.4)) ** 2
    ddpm_std = math.sqrt((1 - ab_t) / (1 - ab_s) * (1 - ab_s / ab_t))
    assert float((a - b).std()) == pytest.approx(ddpm_std, rel=0.02)
    again = ds.solve(sde, x[:4], grid, "ddim", eta=1.0, seed=3).x
    assert torch.equal(again, ds.solve(sde, x[:4], grid, "ddim", eta=1.0, seed=3).x)


def test_thresholding_bounds_the_final_x0():
    schedule = ds.VPLinear()
    model, x = _gmm(schedule)
    x = 3 * x
    sol = ds.solve(ds.ode(model, "lambda"), x, grids.logsnr(schedule, 6), "dpmpp2m", to_zero=True,
                   threshold=0.9, threshold_max=1.0)
    assert float(sol.x.abs().max()) <= 1.0 + 1e-12
    free = ds.solve(ds.ode(model, "lambda"), x, grids.logsnr(schedule, 6), "dpmpp2m", to_zero=True)
    assert float(free.x.abs().max()) > 1.0


def test_unipc_trajectory_holds_the_corrected_states():
    schedule = ds.VPLinear()
    model, x = _gmm(schedule)
    sol = ds.solve(ds.ode(model, "lambda"), x, grids.logsnr(schedule, 6), "unipc", trajectory=True)
    assert torch.equal(sol.trajectory[-1], sol.x)
    plain = ds.solve(ds.ode(model, "lambda"), x, grids.logsnr(schedule, 6), "unipc", corrector=False)
    assert not torch.allclose(plain.x, sol.x)


# ---- orders on gmm-64 ----------------------------------------------------------------------------------
def gmm64_order(order_of, gmm64_case, solver: str, steps: list[int], **options) -> float:
    """Fitted order (−slope of log relative error on log NFE) on gmm-64 with uniform-λ grids."""
    problem, schedule, x, ref = gmm64_case

    def run(n: int) -> ds.Solution:
        return ds.solve(ds.ode(problem.model(schedule), "lambda"), x, grids.logsnr(schedule, n), solver, **options)

    return order_of(run, ref, steps)[0]


# Every solver's fitted order against its declared order_for(...): tests/test_orders.py (the whole registry).


def test_published_3m_is_second_order_asymptotically(gmm64_case, order_of):
    """The D2 coefficient of the published/diffusers 3M is half the exact one: order 2 as h → 0 (kept as
    variant='diffusers' to reproduce diffusers, not as the default)."""
    exact = gmm64_order(order_of, gmm64_case, "dpmpp3m", [160, 320, 640])
    published = gmm64_order(order_of, gmm64_case, "dpmpp3m", [160, 320, 640], variant="diffusers")
    assert exact > 2.7 and published < 2.4


# ---- NFE promised = NFE counted --------------------------------------------------------------------------
@pytest.mark.parametrize("solver", EXP_SOLVERS)
def test_sample_spends_exactly_the_nfe_asked(solver):
    schedule = ds.VPLinear()
    model, x = _gmm(schedule, batch=2)
    for nfe in (1, 2, 3, 4, 5, 7, 10):
        before = model.nfe
        sol = ds.sample(model, x, solver=solver, nfe=nfe)
        assert sol.nfe == nfe == model.nfe - before, (solver, nfe, sol.nfe)
    steps = 6
    sol = ds.solve(ds.ode(model, "lambda"), x, grids.logsnr(schedule, steps), solver)
    assert sol.nfe == ds.get_solver(solver).nfe_for(steps)


def test_singlestep_order_patterns():
    assert orders_for(3, 9) == [3, 3, 2, 1]
    assert orders_for(3, 10) == [3, 3, 3, 1]
    assert orders_for(3, 11) == [3, 3, 3, 2]
    assert orders_for(2, 7) == [2, 2, 2, 1]
    for order in (1, 2, 3):
        for nfe in range(1, 30):
            assert sum(orders_for(order, nfe)) == nfe


def test_adaptive_counts_rejected_trials_and_meets_tolerance(gmm64_case):
    problem, schedule, x, ref = gmm64_case
    spent = []
    for rtol in (0.05, 0.005):
        model = problem.model(schedule)
        sol = ds.solve(ds.ode(model, "lambda"), x, grids.logsnr(schedule, 1), "dpm_adaptive", rtol=rtol, atol=rtol / 10)
        assert sol.nfe == model.nfe
        assert float((sol.x - ref).norm() / ref.norm()) < rtol
        spent.append(sol.nfe)
    assert spent[1] > spent[0]


# ---- every schedule × grid, float32: finite ----------------------------------------------------------
SCHEDULES = {"linear": ds.VPLinear(), "cosine": ds.VPCosine(), "discrete": ds.DiscreteDDPM(), "edm": ds.EDM()}


@pytest.mark.parametrize("grid_name", ["time", "logsnr", "quadratic", "karras"])
@pytest.mark.parametrize("schedule_name", list(SCHEDULES))
def test_finite_on_every_schedule_and_grid(schedule_name, grid_name):
    schedule = SCHEDULES[schedule_name]
    model, x = _gmm(schedule, batch=4, dtype=torch.float32)
    grid = grids.make(grid_name, schedule, 6)
    for solver in EXP_SOLVERS + ["dpm_adaptive"]:
        for extra in ({}, {"to_zero": True}) if "to_zero" in ds.get_solver(solver).options else ({},):
            for variant in ("bh1", "bh2") if solver == "unipc" else (None,):
                options = dict(extra, **({"variant": variant} if variant else {}))
                sol = ds.solve(ds.ode(model, "lambda"), x, grid, solver, **options)
                assert sol.x.dtype == torch.float32
                assert torch.isfinite(sol.x).all(), (solver, options)


# ---- wrong inputs ----------------------------------------------------------------------------------------
def test_wrong_inputs_raise_clear_errors():
    schedule = ds.VPLinear()
    model, x = _gmm(schedule, batch=2)
    dyn, sde = ds.ode(model, "lambda"), ds.VPSDE(schedule).reverse(model)
    grid = grids.logsnr(schedule, 3)
    cases = [
        (dict(solver="unipc", variant="bh3"), "variant must be one of 'bh1', 'bh2', got 'bh3'"),
        (dict(solver="unipc", order=5), "order must be an integer >= 1 and <= 4, got 5"),
        (dict(solver="unipc", order=1), "order=1 with the corrector is not possible"),
        (dict(solver="unipc", order=4, corrector=False), "order=4 without the corrector is not possible"),
        (dict(solver="deis", order=0), "order must be an integer >= 1 and <= 3, got 0"),
        (dict(solver="dpmpp3m", variant="midpoint"), "variant"),
        (dict(solver="dpm3", pattern=[3, 3]), "one order in 1…3 per grid step"),
        (dict(solver="dpm2", pattern=[3, 2, 1]), "each one of 1, 2"),
        (dict(solver="dpm3", orders=[3, 3, 3]), "renamed; use orders → pattern"),
        (dict(solver="dpm3", nfe=12), "build the grid with steps="),
        (dict(solver="dpm3", nfe=9, pattern=[3, 3, 3]), "pattern= or nfe=, not both"),
        (dict(solver="ddim", eta=-0.5), "eta must be a finite number >= 0, got -0.5"),
        (dict(solver="ddim", eta=3.0, dyn=sde), "use eta <= 1"),
        (dict(solver="ddim", eta=1.0, seed=1, generator=torch.Generator(), dyn=sde), "not both"),
        (dict(solver="ddim", eta=0.5), "with eta=0.5 solves SDEs"),
        (dict(solver="dpmpp2m", threshold=1.5), "quantile ratio"),
        (dict(solver="dpm_adaptive", order=1), "order must be an integer >= 2 and <= 3, got 1"),
        (dict(solver="dpm_adaptive", rtol=-1.0), "rtol must be a finite number >= 1e-15 and < 1, got -1.0"),
        (dict(solver="unipc", form="score"), "form must be one of 'noise', 'data', got 'score'"),
        (dict(solver="unipc", prediction="noise"), "renamed; use prediction → form"),
        (dict(solver="dpm_adaptive", prediction="noise"), "renamed; use prediction → form"),
        (dict(solver="dpm2m", eta=0.5), "takes no option"),
        (dict(solver="dpm3", nfe=0), "nfe must be an integer >= 1 or None, got 0"),
        (dict(solver="unipc", lower_order_final="auto"), "lower_order_final must be True or False or None, got 'auto'"),
        (dict(solver="dpmpp2m", to_zero=1), "to_zero must be True or False, got 1"),
    ]
    for kwargs, message in cases:
        solver, dynamics = kwargs.pop("solver"), kwargs.pop("dyn", dyn)
        with pytest.raises(SolverError, match=message.replace("(", r"\(").replace("[", r"\[")):
            ds.solve(dynamics, x, grid, solver, **kwargs)
    with pytest.raises(SolverError, match="solves ODEs"):
        ds.solve(ds.VPSDE(schedule).reverse(model), x, grid, "dpmpp2m")
    for variable in ("t", "sigma"):  # they step in λ: another variable is refused, not silently ignored
        with pytest.raises(SolverError, match=f"its variable is '{variable}', not 'lambda'.*ode\\(model, 'lambda'\\)"):
            ds.solve(ds.ode(model, variable), x, grid, "dpmpp2m")
    with pytest.raises(SolverError, match="NFE budget of at least 1"):
        ds.get_solver("dpm3").steps_for(0)
