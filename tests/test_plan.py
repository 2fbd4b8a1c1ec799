"""The cell plan: every path from "solver at NFE on grid" to a solve agrees, because it goes through plan()."""

from __future__ import annotations

import contextlib

import pytest
import torch

import diffsolve as ds
from diffsolve import grids
from diffsolve.bench import Inputs, expand_run
from diffsolve.bench.cells import cell_plan, solve_cell
from diffsolve.plan import MAX_STEPS, default_config, plan
from diffsolve.problems import get

S = ds.VPLinear()
F64 = torch.float64


def _model():
    return get("gmm-2d").model(S, dtype=F64)


def _x(n: int = 8) -> torch.Tensor:
    return get("gmm-2d").x_T(n, 0, S)


@pytest.mark.parametrize("solver,nfe,options", [
    ("dpmpp2m", 7, {}), ("dpm3", 10, {}), ("heun", 9, {}), ("ipndm", 6, {"order": 3}), ("unipc", 5, {"variant": "bh1"}),
])
def test_sample_is_the_plan_solved(solver, nfe, options):
    """ds.sample(...) is solve(plan.dynamics, x, plan.grid, plan.solver, **plan.options), bit for bit."""
    model, x = _model(), _x()
    p = plan(model, solver, nfe=nfe, grid="karras:rho=5", options=options)
    direct = ds.solve(p.dynamics, x, p.grid, p.solver, **p.options)
    with pytest.warns(UserWarning) if solver == "heun" else contextlib.nullcontext():
        sampled = ds.sample(model, x, solver=solver, nfe=nfe, grid="karras:rho=5", **options)
    assert torch.equal(direct.x, sampled.x) and direct.nfe == sampled.nfe
    assert p.steps == p.solver.steps_for(nfe) and sampled.nfe <= nfe


def test_singlestep_budget_options_come_from_the_plan():
    """dpm3 at NFE 10 gets the paper's pattern for 10 (nfe=10 among its options) and spends exactly 10."""
    p = plan(_model(), "dpm3", nfe=10)
    assert p.options == {"nfe": 10} and p.steps == 4
    assert ds.solve(p.dynamics, _x(), p.grid, p.solver, **p.options).nfe == 10


def test_a_bench_cell_solves_the_same_plan_as_sample():
    """The ODE cell of the bench and ds.sample with the same solver, budget, grid and variable give the same x."""
    cell = expand_run({"problems": ["gmm-2d"], "solvers": ["dpmpp3m"], "grids": ["quadratic"], "variables": ["t"],
                       "nfe": [6], "n": 8})[0]
    inputs = Inputs()
    x_T = inputs.x_T(cell)
    x_cell, nfe, steps, _ = solve_cell(cell, inputs, x_T)
    model = inputs.problem(cell).model(inputs.schedule(cell), dtype=F64)
    sol = ds.sample(model, x_T, solver="dpmpp3m", nfe=6, grid="quadratic")
    assert torch.equal(x_cell, sol.x) and nfe == sol.nfe == 6 and steps == 6
    assert cell_plan(cell, inputs, model).dynamics.variable == "lambda"  # the exponential integrator's own


def test_end_zero_counts_against_the_budget():
    """end="zero" (= to_zero) spends its step to σ = 0 within the NFE: nfe=10 is 9 grid steps plus that step."""
    model, x = _model(), _x()
    sol = ds.sample(model, x, solver="dpmpp2m", nfe=10, grid="karras", end="zero")
    assert sol.nfe == 10 and sol.steps == 9
    same = ds.solve(ds.ode(model, "lambda"), x, grids.karras(S, 9), "dpmpp2m", to_zero=True)
    assert torch.equal(sol.x, same.x)
    assert ds.sample(model, x, solver="dpmpp2m", nfe=10, to_zero=True).nfe == 10
    with pytest.raises(ds.SolverError, match="cannot end at σ = 0.*dpmpp2m.*heun"):
        plan(model, "dpmpp2s", nfe=10, end="zero")
    with pytest.raises(ds.GridError, match="end must be one of"):
        plan(model, "dpmpp2m", nfe=10, end="0")
    with pytest.raises(ds.SolverError, match="needs nfe >= 2"):
        plan(model, "dpmpp2m", nfe=1, end="zero")


def test_stochastic_solvers_plan_the_reverse_sde_in_t():
    model = _model()
    p = plan(model, "ddpm", nfe=8)
    assert p.dynamics.stochastic and p.dynamics.variable == "t"
    with pytest.raises(ds.SolverError, match="runs in t"):
        plan(model, "ddpm", nfe=8, variable="sigma")
    cells = expand_run({"problems": ["gmm-2d"], "solvers": ["euler_maruyama", "ddpm", "sde_dpmpp2m"],
                        "grids": ["time"], "variables": ["t", "sigma", "lambda"], "nfe": [20], "n": 8})
    assert [c.variable for c in cells] == ["t", "t", "t"]  # expanded only into the variable they declare


def test_plan_refusals_name_the_fix(tmp_path):
    model = _model()
    with pytest.raises(ds.SolverError, match="adaptive"):
        plan(model, "dopri5", nfe=10)
    with pytest.raises(ds.GridError, match="exactly one of nfe= or steps="):
        plan(model, "heun", nfe=10, steps=5)
    with pytest.raises(ds.GridError, match=f"at most {MAX_STEPS}"):
        plan(model, "euler", steps=MAX_STEPS + 1)
    path = grids.save(grids.logsnr(S, 5), tmp_path / "g.json", fingerprint="another-model")
    with pytest.raises(ds.GridError, match="another model"):
        plan(model, "dpmpp2m", grid=f"file:{path}", fingerprint=get("gmm-2d").fingerprint())
    assert plan(model, "dpmpp2m", grid=f"file:{path}").steps == 5  # no fingerprint known: only the schedule checked


def test_no_solver_uses_the_measured_table():
    p = plan(_model(), nfe=6)
    solver, grid, options = default_config(6)
    assert p.solver.name == solver and p.grid.name == grid and p.options == options


def test_a_community_name_is_a_whole_sampler():
    """solver="DPM++ 2M Karras" plans the named sampler (its solver, grid and end at the budget); registered solver
    names win over names that spell the same ("ddim" is the solver, "DDIM" diffusers' DDIM sampler)."""
    from diffsolve.presets import resolve

    model = ds.wrap(lambda x, t: 0.1 * x, ds.DiscreteDDPM(), "eps")
    p = plan(model, "dpm++ 2m  KARRAS", nfe=10)
    config = resolve("DPM++ 2M Karras").config(model.schedule, 10)
    assert p.solver.name == config.solver == "dpmpp2m" and torch.equal(p.grid.t, config.grid.t)
    assert p.options.get("to_zero") is True and p.steps == 9  # ends at σ = 0 within the 10 calls
    assert plan(model, "ddim", nfe=10).grid.name == "logsnr" and plan(model, "DDIM", nfe=10).grid.name == "DDIM"
    with pytest.raises(ds.SolverError, match="names a whole sampler"):
        plan(model, "DPM++ 2M Karras", nfe=10, grid="logsnr")


def test_a_budget_of_any_integer_type_is_an_integer_and_others_are_refused():
    """nfe=np.int64(6) (e.g. from a numpy array of budgets) is an integer (audit A16); floats, bools and strings are
    refused by the validation layer, naming the value and the fix."""
    import numpy as np

    prob = ds.problems.get("gmm-2d")
    model = prob.model(prob.default_schedule())
    assert plan(model, "heun", nfe=np.int64(6)).steps == 3 and plan(model, "euler", steps=np.int32(4)).steps == 4
    assert ds.sample(model, prob.x_T(4, 0), solver="heun", nfe=np.int64(6)).nfe == 6
    for bad in (True, 2.5, "6", 0, np.float64(6)):
        with pytest.raises(ds.GridError, match=r"nfe must be an integer >= 1 or None, got .*; pass e.g. nfe=20"):
            plan(model, "heun", nfe=bad)
