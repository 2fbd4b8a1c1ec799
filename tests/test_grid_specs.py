"""Grid specs wherever a grid is named: parameters, custom times, grid files, registered names, errors."""

from __future__ import annotations

import json

import pytest
import torch

import diffsolve as ds
from diffsolve.bench import expand_run
from diffsolve.errors import DiffsolveError, GridError

F64 = torch.float64
LIN = ds.VPLinear()


def test_specs_build_the_same_grids_as_the_functions():
    assert torch.equal(ds.grids.build("karras:rho=5", LIN, 6).t, ds.grids.karras(LIN, 6, rho=5).t)
    assert torch.equal(ds.grids.build("karras", LIN, 6).t, ds.grids.karras(LIN, 6).t)
    g = ds.grids.build("custom:1.0,0.5,0.1,0.001", LIN)
    assert g.t.tolist() == [1.0, 0.5, 0.1, 0.001] and g.steps == 3
    assert ds.grids.parse("karras:rho=5").params == (("rho", 5.0),)
    with pytest.raises(GridError, match="has 3 steps but 5 were asked for"):
        ds.grids.build("custom:1.0,0.5,0.1,0.001", LIN, 5)


@pytest.mark.parametrize("spec,fix", [
    ("karras:rho", "e.g. 'karras:rho=5'"),
    ("karras:beta=2", "it takes: rho"),
    ("karras:rho=five", "write numbers such as 5"),
    ("custom:1.0", "e.g. 'custom:1.0,0.5,0.1,0.001'"),
    ("custom:1.0,half", "write numbers such as"),
    ("file:", "write 'file:path/to/grid.json'"),
    ("logsnrr", "valid grid names are: karras, logsnr, quadratic, time"),
])
def test_parse_errors_name_the_spec_and_the_fix(spec, fix):
    with pytest.raises(GridError) as e:
        ds.grids.parse(spec)
    assert repr(spec) in str(e.value) and fix in str(e.value)


def test_grid_file_round_trip_and_a_mismatched_schedule_is_refused(tmp_path):
    g = ds.grids.karras(LIN, 5, rho=3)
    path = ds.grids.save(g, tmp_path / "grid.json", solver="heun", nfe=10, fingerprint="abc")
    data = json.loads(path.read_text())
    assert data["schedule"] == LIN.to_config() and data["solver"] == "heun"
    loaded = ds.grids.build(f"file:{path}", LIN)
    assert torch.equal(loaded.t, g.t) and loaded.steps == 5
    with pytest.raises(GridError, match="was made for schedule .*VPLinear.* but the solve uses .*VPCosine"):
        ds.grids.build(f"file:{path}", ds.VPCosine())
    with pytest.raises(GridError, match="does not exist"):
        ds.grids.build(f"file:{tmp_path / 'nope.json'}", LIN)
    (tmp_path / "bad.json").write_text('{"times": "x"}')
    with pytest.raises(GridError, match="needs \"times\""):
        ds.grids.build(f"file:{tmp_path / 'bad.json'}", LIN)


@pytest.fixture
def fresh_grid_registry():
    """Registrations made by a test are removed after it (the registry is global)."""
    before = dict(ds.grids.GRIDS)
    yield
    ds.grids.GRIDS.clear()
    ds.grids.GRIDS.update(before)


def test_registered_grid_and_specs_in_sample_and_in_suites(tmp_path, fresh_grid_registry):
    def sqrt_lambda(schedule, steps, power: float = 0.5):
        """Uniform in (λ − λ_min)^power."""
        lo, hi = schedule.lambda_min, schedule.lambda_max
        u = torch.linspace(0, 1, steps + 1, dtype=F64) ** (1 / power)
        return ds.grids.Grid(schedule, schedule.t_from_lambda(lo + u * (hi - lo)), "sqrt_lambda")

    ds.grids.register("sqrt_lambda", sqrt_lambda)
    with pytest.raises(GridError, match="already registered"):
        ds.grids.register("sqrt_lambda", sqrt_lambda)
    assert ds.grids.grid_params("sqrt_lambda") == ["power"]
    model = ds.problems.get("gmm-2d").model()
    x = torch.randn(4, 2, dtype=F64)
    a = ds.sample(model, x, solver="euler", nfe=6, grid="sqrt_lambda:power=0.25")
    b = ds.solve(ds.ode(model, "sigma"), x, sqrt_lambda(model.schedule, 6, 0.25), "euler")  # sample's default
    assert torch.equal(a.x, b.x) and a.nfe == 6
    c = ds.sample(model, x, solver="heun", grid=ds.grids.logsnr(model.schedule, 4))  # a Grid: its steps
    assert c.nfe == 8
    # a grid with its own times: one cell per solver and variable, at the NFE those steps cost (in the NFE list)
    cells = expand_run({"problem": "gmm-2d", "solvers": ["euler", "heun"], "grids": ["custom:1.0,0.3,0.001",
                        "karras:rho=5"], "variables": ["lambda"], "nfe": [2, 4], "n": 4})
    assert sorted((c.solver, c.grid, c.nfe) for c in cells) == sorted([
        ("euler", "custom:1.0,0.3,0.001", 2), ("heun", "custom:1.0,0.3,0.001", 4),
        ("euler", "karras:rho=5", 2), ("euler", "karras:rho=5", 4), ("heun", "karras:rho=5", 2),
        ("heun", "karras:rho=5", 4)])
    with pytest.raises(DiffsolveError, match=r"solver 'euler' runs its 2 steps at nfe=2, which is not in the NFE list "
                                             r"\[4, 8\]"):
        expand_run({"problem": "gmm-2d", "solvers": ["euler", "heun"], "grids": ["custom:1.0,0.3,0.001",
                    "karras:rho=5"], "variables": ["lambda"], "nfe": [4, 8], "n": 4})
    # a grid file's content is part of the cells' fingerprint
    path = ds.grids.save(ds.grids.logsnr(ds.VPLinear(), 3), tmp_path / "g.json")
    one = expand_run({"problem": "gmm-2d", "solver": "euler", "grid": f"file:{path}", "variable": "t", "nfe": [3]})
    ds.grids.save(ds.grids.time(ds.VPLinear(), 3), path)
    two = expand_run({"problem": "gmm-2d", "solver": "euler", "grid": f"file:{path}", "variable": "t"})
    assert one[0].key != two[0].key


def test_sample_budget_warning_and_adaptive_tolerances():
    model = ds.problems.get("gmm-2d").model()
    x = torch.randn(4, 2, dtype=F64)
    with pytest.warns(UserWarning, match="spent 4 evaluations of the nfe=5"):
        sol = ds.sample(model, x, solver="heun", nfe=5)
    assert sol.nfe == 4 and sol.info["nfe_requested"] == 5 and sol.info["nfe_spent"] == 4
    loose = ds.sample(model, x, solver="dopri5", rtol=1e-3, atol=1e-3)
    tight = ds.sample(model, x, solver="dopri5", rtol=1e-8, atol=1e-8)
    ref = ds.problems.get("gmm-2d").reference(x, model.schedule)
    assert tight.nfe > loose.nfe > 0
    assert float((tight.x - ref).abs().max()) < 1e-5 < float((loose.x - ref).abs().max())
    with pytest.raises(ds.SolverError, match="adaptive"):
        ds.sample(model, x, solver="dopri5", nfe=10)
