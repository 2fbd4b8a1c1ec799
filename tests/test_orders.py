"""Measured convergence orders of every fixed-step deterministic solver in the registry against what it declares.

For each solver in SOLVERS (and each variant its option schema offers) the order is fitted with the `order_of`
fixture (diffsolve.bench.metrics.fitted_order: least-squares slope of log relative error on log counted NFE)
and compared with `solver.order_for(**options)` within ±0.3. Nothing here lists expected orders by hand.

Problems with a known solution, and the asymptotic ranges used:
- Runge–Kutta and torchdiffeq methods: the one-Gaussian closed form (tests/gaussian.py), the probability-flow
  ODE in t, uniform-λ grids of 32, 64, 128 steps; and Euler, Heun, RK4 also in σ̄ (the DDIM ODE).
- Exponential integrators: gmm-64 against its float64 reference (the one-Gaussian is too special for them: its
  x̂0(λ) is so smooth that third-order multistep methods show order 4 and a first-order last step costs nothing),
  uniform-λ grids of 40, 80, 160 steps for every solver's defaults and a few variants (fast), except the
  defaults still pre-asymptotic there (PRE_ASYMPTOTIC: DPM-Solver++(3M)'s slope is 3.3–3.4 up to 320 steps on
  this problem, fitted at 320, 640, 1280); every option variant at 320, 640, 1280 steps (slow).
Singlestep solvers driven by an NFE budget K use the paper's pattern for K, whose order depends on K mod k
(e.g. dpm3 with K ≡ 0 or 1 mod 3 ends in a first-order step: order 2); each residue is fitted on its own.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import diffsolve as ds
from diffsolve.plan import dynamics_for
from diffsolve.solvers.options import Option

F64 = torch.float64
TOLERANCE = 0.3
GENERIC_STEPS = [32, 64, 128]
FAST_STEPS = [40, 80, 160]
DEEP_STEPS = [320, 640, 1280]
# defaults whose fitted slope at FAST_STEPS is still pre-asymptotic on gmm-64 (measured: 3.38 for dpmpp3m,
# 3.35 for dpm3 with every step of order 3), fitted further out
PRE_ASYMPTOTIC = {"dpmpp3m": DEEP_STEPS, "dpm3": [80, 160, 320]}
# variants also fitted in the fast tier (every variant is fitted in the slow one)
FAST_VARIANTS = [("dpm2m", {"variant": "taylor"}), ("unipc", {"variant": "bh1"}), ("unipc", {"order": 2})]
# options that change what is solved (to_zero: the end point) or that need a value and not a choice
NOT_VARIANTS = {"to_zero", "threshold", "threshold_max", "eta", "seed", "bm", "generator", "nfe", "pattern"}


def fixed_step_deterministic() -> list[str]:
    return [name for name, s in ds.SOLVERS.items()
            if not s.adaptive and not s.stochastic and s.nfe_for(1) is not None]


def variants(solver: ds.Solver) -> list[dict[str, Any]]:
    """The schema's formula choices: every other choice, every other `order`, and the non-default flags."""
    out: list[dict[str, Any]] = []
    for option in solver.schema:
        if option.name in NOT_VARIANTS:
            continue
        out += [{option.name: v} for v in values(option) if v != option.default]
    valid = []
    for options in out:
        try:
            solver.check_options(options)
        except ds.SolverError:
            continue  # e.g. unipc order=1 needs corrector=False
        if not solver.stochastic_for(**options):
            valid.append(options)
    return valid


def values(option: Option) -> list[Any]:
    if option.kind == "choice":
        return list(option.choices)
    if option.kind == "bool":
        return [True, False]
    if option.kind == "int" and option.name == "order":
        return list(range(int(option.low), int(option.high) + 1))
    return []


def budget_residues(solver: ds.Solver) -> list[int]:
    """NFE residues mod the evaluations per step that pick different patterns (budget-patterned solvers only)."""
    return list(range(solver.nfe_for(1))) if solver.budget_options(solver.nfe_for(1)) else []


# ---- cases ----------------------------------------------------------------------------------------------------
def exp_cases(deep: bool) -> list[tuple[str, dict[str, Any], int | None]]:
    """(solver, options, budget residue or None) for the exponential integrators."""
    cases = []
    for name in fixed_step_deterministic():
        solver = ds.get_solver(name)
        if solver.family != "exponential":
            continue
        if deep:
            cases += [(name, options, None) for options in variants(solver)]
        else:
            cases += [(name, {}, None)] + [(name, {}, r) for r in budget_residues(solver)]
    return cases if deep else cases + [(name, options, None) for name, options in FAST_VARIANTS]


def case_id(case: tuple[str, dict[str, Any], int | None]) -> str:
    name, options, residue = case
    label = ",".join(f"{k}={v}" for k, v in options.items())
    budget = "" if residue is None else f"[nfe%{ds.get_solver(name).nfe_for(1)}={residue}]"
    return name + (f"[{label}]" if label else "") + budget


def fit(order_of, model: ds.Model, schedule: ds.Schedule, x: torch.Tensor, exact: torch.Tensor, name: str,
        options: dict[str, Any], residue: int | None, steps: list[int], variable: str | None = None,
        ) -> tuple[float, float, list[float]]:
    """(fitted order, declared order, errors): one solve per step count, counted NFE on the x-axis."""
    solver = ds.get_solver(name)
    declared = set()

    def run(n: int) -> ds.Solution:
        opts = dict(options)
        if residue is not None:
            budget = n * solver.nfe_for(1) + residue
            opts.update(solver.budget_options(budget))
            n = solver.steps_for(budget)
        declared.add(solver.order_for(**opts))
        return ds.solve(dynamics_for(model, solver, opts, variable), x, ds.grids.logsnr(schedule, n), solver, **opts)

    order, errors = order_of(run, exact, steps)
    assert len(declared) == 1, f"{name} {options}: the declared order changes along the fit ({declared})"
    return order, declared.pop(), errors


def gmm64_fit(order_of, gmm64_case, *case_and_steps: Any) -> tuple[float, float, list[float]]:
    """`fit` on gmm-64 (its exact-ε model on the linear VP, 8 draws of p_T, their float64 reference)."""
    problem, schedule, x, reference = gmm64_case
    return fit(order_of, problem.model(schedule), schedule, x, reference, *case_and_steps)


# ---- the tests ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in fixed_step_deterministic() if ds.get_solver(n).family != "exponential"])
def test_generic_orders_in_t(name, gaussian_data, order_of):
    data, schedule = gaussian_data, ds.VPLinear()
    x = torch.randn(16, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    exact = data.exact(x, schedule, schedule.t_max, schedule.t_min)
    own = ds.get_solver(name).integrates.variables  # iPNDM steps in σ̄; the rest take any variable: t here
    steps = [64, 128, 256] if name == "ipndm_v" else GENERIC_STEPS  # order 4 in σ̄ is asymptotic from ~64 steps
    measured, declared, errors = fit(order_of, data.model(schedule), schedule, x, exact, name, {}, None, steps,
                                     None if own else "t")
    assert abs(measured - declared) <= TOLERANCE, f"{name}: fitted {measured:.2f}, declared {declared} ({errors})"


@pytest.mark.parametrize("name", ["euler", "heun", "rk4"])
def test_orders_hold_in_sigma_bar(name, gaussian_data, order_of):
    data, schedule = gaussian_data, ds.VPLinear()
    x = torch.randn(16, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    exact = data.exact(x, schedule, schedule.t_max, schedule.t_min)
    measured, declared, _ = fit(order_of, data.model(schedule), schedule, x, exact, name, {}, None, GENERIC_STEPS,
                                "sigma")
    assert abs(measured - declared) <= 0.2


@pytest.mark.parametrize("case", exp_cases(deep=False), ids=case_id)
def test_exponential_orders(gmm64_case, order_of, case):
    steps = PRE_ASYMPTOTIC.get(case[0], FAST_STEPS) if not case[1] and case[2] is None else FAST_STEPS
    measured, declared, errors = gmm64_fit(order_of, gmm64_case, *case, steps)
    assert abs(measured - declared) <= TOLERANCE, f"{case_id(case)}: fitted {measured:.2f}, declared {declared}"


@pytest.mark.slow
@pytest.mark.parametrize("case", exp_cases(deep=True), ids=case_id)
def test_exponential_orders_of_every_variant(gmm64_case, order_of, case):
    measured, declared, errors = gmm64_fit(order_of, gmm64_case, *case, DEEP_STEPS)
    assert abs(measured - declared) <= TOLERANCE, f"{case_id(case)}: fitted {measured:.2f}, declared {declared}"


def test_every_fixed_step_solver_is_fitted():
    """The parametrisations above cover the whole registry's fixed-step deterministic solvers."""
    covered = {c[0] for c in exp_cases(False) + exp_cases(True)}
    covered |= {n for n in fixed_step_deterministic() if ds.get_solver(n).family != "exponential"}
    assert covered == set(fixed_step_deterministic())
    assert {"dpmpp2m", "unipc", "rk4", "torchdiffeq_rk4", "dpm3"} <= covered


def test_declared_orders_of_patterns_and_options():
    """order_for reads the options: patterns ending in lower orders, lower_order_final, UniPC's corrector."""
    dpm3, unipc = ds.get_solver("dpm3"), ds.get_solver("unipc")
    assert dpm3.order_for() == 3 and dpm3.order_for(nfe=11) == 3  # [3, 3, 3, 2]
    assert dpm3.order_for(nfe=9) == 2 and dpm3.order_for(nfe=10) == 2  # [3, 3, 2, 1], [3, 3, 3, 1]
    assert dpm3.order_for(pattern=[3, 3, 1]) == 2 and dpm3.order_for(pattern=[1, 1]) == 1
    assert unipc.order_for() == 3 and unipc.order_for(order=4) == 4 and unipc.order_for(lower_order_final=True) == 2
    assert ds.get_solver("dpmpp3m").order_for(variant="diffusers") == 2
    assert ds.get_solver("dpmpp2m").order_for(lower_order_final=True) == 2


def test_adaptive_dopri5_reaches_its_tolerance(gaussian_data):
    data, schedule = gaussian_data, ds.VPLinear()
    model = data.model(schedule)
    x = torch.randn(16, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    exact = data.exact(x, schedule, schedule.t_max, schedule.t_min)
    for rtol in (1e-6, 1e-9):
        sol = ds.solve(ds.ode(model, "sigma"), x, ds.grids.time(schedule, 1), "dopri5", rtol=rtol, atol=rtol)
        assert (sol.x - exact).abs().max().item() < 100 * rtol
    assert sol.nfe > 20


def test_our_euler_and_midpoint_match_torchdiffeq_on_the_same_grid(gaussian_data):
    data, schedule = gaussian_data, ds.VPLinear()
    model = data.model(schedule)
    x = torch.randn(8, 3, dtype=F64)
    grid = ds.grids.karras(schedule, 9)
    for ours, theirs in (("euler", "torchdiffeq_euler"), ("midpoint", "torchdiffeq_midpoint")):
        a = ds.solve(ds.ode(model, "t"), x, grid, ours)
        b = ds.solve(ds.ode(model, "t"), x, grid, theirs)
        assert torch.allclose(a.x, b.x, rtol=1e-12, atol=1e-13)
        assert a.nfe == b.nfe
