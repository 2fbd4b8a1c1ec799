"""The solver registry as a whole: identity by value, value-keyed caches."""

from __future__ import annotations

import pytest
import torch

import diffsolve as ds
from diffsolve import grids
from diffsolve.plan import dynamics_for
from diffsolve.solvers.exp.multistep import DPMMultistep
from tests.gaussian import GaussianData

F64 = torch.float64


def _setup():
    schedule = ds.VPLinear()
    model = GaussianData().model(schedule)
    x = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    return schedule, model, x


def test_plan_cache_is_keyed_by_the_solver_object_not_its_name():
    """Two unregistered solvers with one name but different orders must not share a cached plan on a grid."""
    schedule, model, x = _setup()
    grid = grids.logsnr(schedule, 8)
    dyn = ds.ode(model, "lambda")
    second, third = DPMMultistep("mine", 2, "data"), DPMMultistep("mine", 3, "data")
    a = ds.solve(dyn, x, grid, second).x
    b = ds.solve(dyn, x, grid, third).x  # same grid object: a name-keyed cache would return the order-2 plan
    assert torch.equal(a, ds.solve(dyn, x, grids.logsnr(schedule, 8), "dpmpp2m").x)
    assert torch.equal(b, ds.solve(dyn, x, grids.logsnr(schedule, 8), "dpmpp3m").x)
    assert not torch.equal(a, b)


def test_solvers_compare_by_value():
    assert DPMMultistep("mine", 2, "data") == DPMMultistep("mine", 2, "data")
    assert hash(DPMMultistep("mine", 2, "data")) == hash(DPMMultistep("mine", 2, "data"))
    assert DPMMultistep("mine", 2, "data") != DPMMultistep("mine", 3, "data")
    assert DPMMultistep("mine", 2, "data") != DPMMultistep("mine", 2, "noise")
    assert ds.get_solver("dpmpp2m") == DPMMultistep("dpmpp2m", 2, "data")


FAMILIES = {"runge-kutta", "torchdiffeq", "exponential", "adams-bashforth", "sde-exponential", "torchsde", "learned"}


def test_every_solver_declares_family_contract_and_a_valid_schema():
    from tests.learned_cases import examples

    for name, solver in [*ds.SOLVERS.items(), *((s.name, s) for s in examples())]:
        assert solver.family in FAMILIES, name
        assert solver.integrates.what and solver.integrates.fix, name
        assert solver.stochastic == solver.integrates.stochastic
        for option in solver.schema:
            assert option.doc, (name, option.name)
            assert option.valid(option.default), (name, option.name, option.default)  # the default passes its check
        text = solver.describe()
        assert all(o.name in text for o in solver.schema) and solver.family in text
        solver.check_options({})  # no options is always valid


def test_the_report_groups_by_family_not_by_module_path():
    from diffsolve.bench.report import family

    assert family("dpmpp2m") == "exponential" and family("unipc[variant=bh1]") == "exponential"
    assert family("heun") == "runge-kutta" and family("ddpm") == "sde-exponential" and family("dopri5") == "torchdiffeq"
    assert family("ipndm") == "adams-bashforth" and family("not-registered") == "other"


BAD_OPTIONS = [  # (solver, options, words the message must contain) — issue 15 §1 for solvers
    ("ddim", {"eta": float("nan")}, "eta must be a finite number >= 0, got nan"),
    ("ddim", {"eta": "abc"}, "eta must be a finite number >= 0, got 'abc'"),
    ("ddim", {"eta": True}, "got True"),
    ("ddim", {"seed": "0"}, "seed must be a non-negative integer, or one per sample (a list or 1-D integer "
                             "tensor) or None, got '0'"),
    ("dpmpp2m", {"threshold": float("inf")}, "threshold must be a finite number > 0 and <= 1 or None, got inf"),
    ("dopri5", {"rtol": -1.0, "atol": -1.0}, "rtol must be a finite number >= 1e-15 and < 1, got -1.0"),
    ("dopri5", {"rtol": 0.0}, "got 0.0"),
    ("dopri5", {"rtol": "1e-3"}, "got '1e-3'"),
    ("dopri5", {"options": {"frist_step": 0.1}}, "unknown key(s): frist_step"),
    ("torchdiffeq_rk4", {"options": {"step_t": [0.5]}}, "unknown key(s): step_t"),
    ("dpm_adaptive", {"theta": 1.5}, "theta must be a finite number > 0 and <= 1, got 1.5"),
    ("dpm_adaptive", {"max_trials": 2.5}, "max_trials must be an integer >= 1, got 2.5"),
    ("unipc", {"corrector": "yes"}, "corrector must be True or False, got 'yes'"),
    ("dpm3", {"pattern": [3, "2"]}, "got [3, '2']"),
    ("sde_dpmpp2m", {"variant": "heun"}, "variant must be one of 'midpoint', 'taylor', got 'heun'"),
    ("sde_dpmpp2m", {"solver_type": "heun"}, "solver_type → variant"),
    ("sde_dpmpp3m", {"to_zero": "yes"}, "to_zero must be True or False, got 'yes'"),
    ("euler_maruyama", {"seed": -1}, "got -1"),
]


def test_bad_option_values_raise_before_any_work():
    schedule, model, x = _setup()
    grid = grids.logsnr(schedule, 4)
    for name, options, words in BAD_OPTIONS:
        solver = ds.get_solver(name)
        calls = model.nfe
        with pytest.raises(ds.SolverError) as info:
            ds.solve(dynamics_for(model, solver, {}), x, grid, name, **options)
        assert words in str(info.value), (name, options, str(info.value))
        assert "default" in str(info.value) or "renamed" in str(info.value) or "unknown key" in str(info.value)
        assert model.nfe == calls  # nothing was evaluated


def test_contract_errors_name_what_the_solver_integrates():
    schedule, model, x = _setup()
    grid = grids.logsnr(schedule, 4)
    with pytest.raises(ds.SolverError, match=r"integrates the reverse VP-SDE of a model.*it has no model"):
        ds.solve(ds.VPSDE(schedule), x, grids.time(schedule, 4, t_start=schedule.t_min, t_end=schedule.t_max), "ddpm")

    class NotSemilinear(ds.Dynamics):
        stochastic, additive_noise = True, True

        def drift(self, y, p):
            return -y

        def diffusion(self, y, p):
            return torch.ones_like(y)

    with pytest.raises(ds.SolverError, match=r"does not declare the semi-linear diffusion form"):
        ds.solve(NotSemilinear(schedule, model), x, grid, "sde_dpmpp2m", seed=0)
    ds.solve(NotSemilinear(schedule, model), x, grid, "euler_maruyama", seed=0)  # any SDE: accepted
    with pytest.raises(ds.SolverError, match=r"its variable is 't', not 'lambda'"):
        ds.sample(model, x, solver="unipc", nfe=5, variable="t")
    with pytest.raises(ds.SolverError, match="runs in t"):
        ds.sample(model, x, solver="ddpm", nfe=5, variable="sigma")


def test_sample_and_ode_default_to_the_same_variable():
    schedule, model, x = _setup()
    heun = ds.sample(model, x, solver="heun", steps=5)
    assert torch.equal(heun.x, ds.solve(ds.ode(model), x, grids.logsnr(schedule, 5), "heun").x)
    assert ds.ode(model).variable == "sigma"
    # exponential integrators step in λ: sample() builds their ODE in λ
    dpm = ds.sample(model, x, solver="dpmpp2m", steps=5)
    assert torch.equal(dpm.x, ds.solve(ds.ode(model, "lambda"), x, grids.logsnr(schedule, 5), "dpmpp2m").x)
    for bad in (True, 0, -3, 2.5):
        with pytest.raises(ds.DiffsolveError, match="nfe must be an integer >= 1"):
            ds.sample(model, x, solver="heun", nfe=bad)
    with pytest.raises(ds.GridError, match=r"GiB for the grid.*use at most"):
        ds.sample(model, x, solver="heun", nfe=10**12)
    with pytest.raises(ds.SolverError, match="is adaptive: it picks its own steps; give rtol=/atol="):
        ds.sample(model, x, solver="dopri5", nfe=10)
    with pytest.raises(ds.SolverError, match="steps on the grid, but its evaluations per step are not fixed"):
        ds.sample(model, x, solver="torchdiffeq_explicit_adams", nfe=10)


def test_equal_grids_share_one_compiled_plan_and_unequal_ones_do_not():
    """The coefficient cache is keyed by value: a fresh grid with the same times reuses the plan, another grid
    or another solver with the same name does not."""
    from diffsolve.solvers.cache import PLANS

    schedule, model, x = _setup()
    dyn = ds.ode(model, "lambda")
    PLANS.clear()
    first = ds.solve(dyn, x, grids.logsnr(schedule, 9), "dpmpp3m").x
    size = len(PLANS)
    again = ds.solve(dyn, x, grids.logsnr(schedule, 9), "dpmpp3m").x  # a new Grid object, equal values
    assert len(PLANS) == size and torch.equal(first, again)
    ds.solve(dyn, x, grids.logsnr(schedule, 10), "dpmpp3m")
    ds.solve(dyn, x, grids.logsnr(schedule, 9), DPMMultistep("dpmpp3m", 2, "data"))  # same name, other order
    assert len(PLANS) == size + 2
    heun = ds.solve(ds.ode(model, "sigma"), x, grids.logsnr(schedule, 9), "heun").x
    assert torch.equal(heun, ds.solve(ds.ode(model, "sigma"), x, grids.logsnr(schedule, 9), "heun").x)
    assert len(PLANS) == size + 3
