"""Tuned step grids: exact DP, valid grids, determinism, train/held-out separation, grid files."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

import diffsolve as ds
from diffsolve.errors import DiffsolveError, GridError
from diffsolve.tuning import TunedGrid, dp_path, tune
from diffsolve.tuning.dp import ddim_sq_errors, rmse_costs
from diffsolve.tuning.teacher import SCHEMES, Teacher, solve_teacher


def brute_force(cost: np.ndarray, steps: int) -> tuple[float, list[int]]:
    m = cost.shape[0]
    best = (np.inf, [])
    for inner in itertools.combinations(range(1, m - 1), steps - 1):
        path = [0, *inner, m - 1]
        total = sum(cost[a, b] for a, b in zip(path[:-1], path[1:]))
        best = min(best, (total, path))
    return best


@pytest.mark.parametrize("m,steps,seed", [(6, 1, 0), (7, 3, 1), (8, 4, 2), (9, 2, 3), (9, 8, 4)])
def test_dp_equals_brute_force(m, steps, seed):
    rng = np.random.default_rng(seed)
    cost = np.triu(rng.random((m, m)), 1)
    cost[np.tril_indices(m)] = np.inf
    total, path = brute_force(cost, steps)
    got = dp_path(cost, steps)
    assert got[0] == 0 and got[-1] == m - 1 and len(got) == steps + 1
    assert sum(cost[a, b] for a, b in zip(got[:-1], got[1:])) == pytest.approx(total, rel=1e-12)
    assert got == path


def test_dp_refuses_impossible_step_counts():
    with pytest.raises(GridError, match="cannot pick 6 steps from 6"):
        dp_path(np.zeros((6, 6)), 6)


def test_ddim_costs_vanish_on_a_point_mass():
    # a single Gaussian with s → 0: ε is constant along the flow, so a DDIM step between any two teacher states is
    # exact and every cost is ~0; the teacher records its states and ε at the candidate nodes as it runs
    sched = ds.VPLinear()
    mix = ds.problems.GaussianMixture(torch.ones(1), torch.full((1, 3), 0.4, dtype=torch.float64),
                                      torch.full((1, 3), 1e-6, dtype=torch.float64), name="point")
    teacher = Teacher(nfe=20, candidates=6)
    rec = solve_teacher(mix.model(sched), teacher, mix.x_T(8, 0, sched), record=True)
    times = teacher.grid(sched).t[teacher.nodes()]
    cost = rmse_costs(ddim_sq_errors(sched, times, rec.path, rec.eps), 8 * 3)
    finite = cost[np.isfinite(cost)]
    assert finite.size == 15 and finite.max() < 1e-6


KW = dict(progress=False)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> TunedGrid:
    KW["cache_dir"] = tmp_path_factory.mktemp("teachers")
    return tune("gmm-2d", "dpmpp2m", 4, train_seeds=[3], heldout_seeds=[4], n=64, candidates=16, max_evals=40, **KW)


def test_tuned_grid_is_a_valid_grid_with_exact_ends(tuned):
    sched = tuned.grid.schedule
    t = tuned.grid.t
    assert tuned.grid.steps == 4 and bool((torch.diff(t) < 0).all())
    assert float(t[0]) == sched.t_max and float(t[-1]) == sched.t_min
    sched.check_times(t)


def test_tuning_reports_train_and_heldout_separately_and_never_worse_than_its_start(tuned):
    assert tuned.train_error <= tuned.start_train_error
    assert tuned.heldout_error is not None and tuned.heldout_error != tuned.train_error
    assert tuned.train_seeds == [3] and tuned.heldout_seeds == [4]
    assert tuned.cost_nfe > 0 and tuned.cost_seconds > 0


def test_tuning_is_deterministic_given_its_seeds(tuned):
    again = tune("gmm-2d", "dpmpp2m", 4, train_seeds=[3], heldout_seeds=[4], n=64, candidates=16, max_evals=40, **KW)
    assert torch.equal(again.grid.t, tuned.grid.t) and again.train_error == tuned.train_error


def test_heldout_seeds_must_not_overlap_training():
    with pytest.raises(DiffsolveError, match="overlap"):
        tune("gmm-2d", "dpmpp2m", 4, train_seeds=[1, 2], heldout_seeds=[2], **KW)


def test_grid_file_round_trips_and_refuses_a_mismatch(tuned, tmp_path):
    path = tuned.save(tmp_path / "grid.json")
    data = json.loads(path.read_text())
    assert data["solver"] == "dpmpp2m" and data["nfe"] == 4 and data["schedule"]["type"] == "VPLinear"
    assert data["times"] == tuned.grid.t.tolist() and data["fingerprint"] == tuned.fingerprint
    back = TunedGrid.load(path, schedule=ds.VPLinear(), fingerprint=tuned.fingerprint)
    assert torch.equal(back.grid.t, tuned.grid.t) and back.train_error == tuned.train_error
    assert back.extra() == tuned.extra()
    with pytest.raises(GridError, match="made for schedule.*VPLinear"):
        TunedGrid.load(path, schedule=ds.VPCosine())
    with pytest.raises(GridError, match="fingerprint"):
        TunedGrid.load(path, fingerprint="another-model")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GridError, match="not valid JSON"):
        TunedGrid.load(tmp_path / "bad.json")
    plain = ds.grids.save(ds.grids.logsnr(ds.VPLinear(), 3), tmp_path / "plain.json")
    with pytest.raises(GridError, match="plain grid, not a tuned one"):
        TunedGrid.load(plain)


def test_a_tuned_file_is_a_grid_spec_everywhere(tuned, tmp_path):
    path = tuned.save(tmp_path / "tuned.json")
    spec = f"file:{path}"
    grid = ds.grids.build(spec, ds.VPLinear(), 4)
    assert torch.equal(grid.t, tuned.grid.t)
    assert torch.equal(ds.grids.parse(spec).build(ds.VPLinear(), fingerprint=tuned.fingerprint).t, tuned.grid.t)
    with pytest.raises(GridError, match="not 'abc'"):
        ds.grids.parse(spec).build(ds.VPLinear(), fingerprint="abc")
    with pytest.raises(GridError, match="made for schedule"):
        ds.grids.build(spec, ds.VPCosine())
    prob = ds.problems.get("gmm-2d")
    model = prob.model(ds.VPLinear())
    x = prob.x_T(8, 4, ds.VPLinear())
    sol = ds.sample(model, x, solver="dpmpp2m", grid=spec)
    ref = ds.solve(ds.ode(model, "lambda"), x, tuned.grid, "dpmpp2m")
    assert sol.nfe == 4 and torch.equal(sol.x, ref.x)


def test_public_tune_accepts_a_model_and_each_method():
    prob = ds.problems.get("gmm-2d")
    model = prob.model(prob.default_schedule())
    by_dp = ds.grids.tune(model, "ipndm", 4, train_seeds=[3], heldout_seeds=None, n=32, candidates=12,
                          method="dp", shape=(2,), **KW)
    assert by_dp.start == "dp" and by_dp.method == "dp" and by_dp.heldout_error is None
    assert by_dp.train_error == by_dp.start_train_error
    by_nm = ds.grids.tune(model, "ipndm", 4, train_seeds=[3], heldout_seeds=None, n=32, max_evals=30,
                          method="refine", shape=(2,), **KW)
    assert by_nm.start in ("logsnr", "time", "quadratic", "karras") and by_nm.train_error <= by_nm.start_train_error
    with pytest.raises(DiffsolveError, match="restarts must be a positive integer"):
        ds.grids.tune(model, "ipndm", 4, train_seeds=[3], restarts=0, shape=(2,), **KW)
    with pytest.raises(DiffsolveError, match="tuning method"):
        ds.grids.tune(model, "ipndm", 4, train_seeds=[3], method="gradient", shape=(2,), **KW)


def test_cli_tune_writes_a_grid_file_and_prints_both_errors(tmp_path, capsys, monkeypatch):
    from diffsolve.cli import main

    monkeypatch.setenv("DIFFSOLVE_CACHE", str(tmp_path / "cache"))

    out = tmp_path / "g.json"
    rc = main(["tune", "--problem", "gmm-2d", "--solver", "ipndm:order=2", "--nfe", "4", "--train-seeds", "3",
               "--heldout-seeds", "4", "--n", "32", "--candidates", "12", "--max-evals", "20", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "held-out" in text and "model evaluations" in text
    back = TunedGrid.load(out, schedule=ds.problems.get("gmm-2d").default_schedule())
    assert back.solver == "ipndm" and back.options == {"order": 2} and back.grid.steps == 4
    assert back.train_seeds == [3] and back.heldout_seeds == [4] and back.n == 32
    assert main(["tune", "--problem", "gmm-2d", "--solver", "ipndm:order", "--nfe", "4", "--out", str(out)]) == 2


def test_cli_tunes_several_nfes_into_one_file_each_with_the_new_flags(tmp_path, capsys):
    from diffsolve.cli import main

    out = tmp_path / "g.json"
    rc = main(["tune", "--problem", "gmm-2d", "--solver", "ipndm:order=2", "--nfe", "4,5", "--n", "16",
               "--candidates", "8", "--batch-size", "8", "--max-evals", "4", "--teacher-nfe", "28",
               "--objective", "trimmed", "--trim", "0.1", "--gradient", "autograd", "--max-seconds", "600",
               "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "sample-evaluations forward" in text and "shared with the other NFEs" in text
    for k in (4, 5):
        back = TunedGrid.load(tmp_path / f"g-nfe{k}.json")
        assert back.nfe == k and back.teacher["nfe"] == 28 and back.objective == "trimmed"
        assert back.gradient == "autograd" and back.n == 16
    assert list((tmp_path / "cache").glob("teacher-*.pt"))
    assert main(["tune", "--problem", "gmm-2d", "--solver", "ipndm", "--nfe", "4,x", "--out", str(out)]) == 2
    assert main(["tune", "--problem", "gmm-2d", "--solver", "ipndm", "--nfe", "4", "--trim", "0.7",
                 "--out", str(out)]) == 2


def test_bench_tuned_cells_tune_on_other_seeds_report_cost_and_reuse_the_cache(tmp_path, monkeypatch):
    import diffsolve.tuning

    spec = "tuned:n=32:candidates=12:max_evals=15"
    kw = dict(solvers=["ipndm"], grids=["logsnr", spec], nfe=[4], variables=["sigma"], n=16, seeds=[2],
              progress=False)
    first = ds.bench.run("gmm-2d", out=tmp_path, **kw)
    tuned_rec = next(r for r in first.records if r["grid"] == spec)
    assert tuned_rec["status"] == "ok" and tuned_rec["tune_nfe"] > 0 and tuned_rec["tune_seconds"] > 0
    files = list((tmp_path / "cache").glob("tuned-*.json"))
    assert len(files) == 1
    saved = TunedGrid.load(files[0], schedule=ds.VPLinear())
    assert saved.train_seeds == [2 + 1000] and saved.solver == "ipndm" and saved.nfe == 4
    assert tuned_rec["tune_chosen"] == saved.chosen and saved.validation_seeds == [2 + 1000 + 7919]
    assert "tuning cost per cell" in first.markdown()
    (tmp_path / "results.jsonl").unlink()  # a rerun of the cells must read the tuned grid, not tune again

    def refuse(*a, **k):
        raise AssertionError("tuned again")
    monkeypatch.setattr(diffsolve.tuning, "tune", refuse)
    again = ds.bench.run("gmm-2d", out=tmp_path, **kw)
    rec = next(r for r in again.records if r["grid"] == spec)
    assert rec["status"] == "ok" and rec["rmse"] == tuned_rec["rmse"] and rec["tune_nfe"] == tuned_rec["tune_nfe"]
    with pytest.raises(GridError, match="tuned per benchmark cell"):
        ds.grids.build("tuned", ds.VPLinear(), 4)
    with pytest.raises(GridError, match="takes no parameter 'rho'"):
        ds.grids.parse("tuned:rho=3")


@pytest.mark.parametrize("nfe", [1, 3, 4, 5, 6, 8, 10, 15, 20, 50])
def test_sample_without_a_solver_follows_the_documented_table(nfe):
    from diffsolve.plan import DEFAULT_CONFIGS, default_config

    prob = ds.problems.get("gmm-2d")
    model = prob.model(prob.default_schedule())
    x = prob.x_T(16, 0, prob.default_schedule())
    bound, solver, grid, options = next(row for row in DEFAULT_CONFIGS if nfe <= row[0])
    assert default_config(nfe) == (solver, grid, options)
    got = ds.sample(model, x, nfe=nfe)
    want = ds.sample(model, x, nfe=nfe, solver=solver, grid=grid, **options)
    assert got.solver == solver and got.nfe == want.nfe and torch.equal(got.x, want.x)
    assert torch.equal(got.grid.t, ds.grids.build(grid, model.schedule, ds.get_solver(solver).steps_for(nfe)).t)


def test_sample_without_a_solver_keeps_an_explicit_grid_and_options_and_needs_a_budget():
    from diffsolve.plan import default_config

    prob = ds.problems.get("gmm-2d")
    model = prob.model(prob.default_schedule())
    x = prob.x_T(8, 0, prob.default_schedule())
    solver, _, options = default_config(6)
    got = ds.sample(model, x, nfe=6, grid="karras")
    assert torch.equal(got.x, ds.sample(model, x, nfe=6, solver=solver, grid="karras", **options).x)
    with pytest.raises(GridError, match="exactly one of nfe= or steps="):
        ds.sample(model, x)
    assert ds.sample(model, x, steps=6).nfe == ds.get_solver(solver).nfe_for(6)


def test_bench_runs_a_tuned_file_and_refuses_one_of_another_model(tuned, tmp_path):
    path = tuned.save(tmp_path / "tuned.json")
    kw = dict(solvers=["dpmpp2m"], grids=[f"file:{path}"], nfe=[4], variables=["lambda"], n=8, seeds=[0],
              progress=False)
    ok = ds.bench.run("gmm-2d", **kw).records[0]
    assert ok["status"] == "ok" and ok["nfe"] == 4
    with pytest.raises(DiffsolveError, match="fingerprint") as e:  # refused before any cell runs (its plan)
        ds.bench.run("gmm-64", **kw)
    assert "checked before any cell runs" in str(e.value)


def test_the_choice_is_made_on_validation_draws_of_other_seeds(tuned):
    from diffsolve.tuning import VALIDATION_OFFSET
    from diffsolve.tuning.teacher import Teacher

    assert tuned.validation_seeds == [3 + VALIDATION_OFFSET] and tuned.chosen in ("start", "steps", "steps+eval")
    prob = ds.problems.get("gmm-2d")
    sched = tuned.grid.schedule
    model = prob.model(sched, dtype=torch.float64)
    x = prob.x_T(32, tuned.validation_seeds[0], sched)  # half the training draws
    scheme = next(i for i, (solver, _, _) in enumerate(SCHEMES) if solver == tuned.teacher["solver"])
    ref = solve_teacher(model, Teacher(tuned.teacher["nfe"], 16, scheme), x, record=False).end  # the same teacher
    sol = ds.solve(ds.ode(model, "lambda"), x, tuned.grid, "dpmpp2m")
    assert float(torch.sqrt(torch.mean((sol.x - ref) ** 2))) == pytest.approx(tuned.validation_error, rel=1e-9)


def test_validation_seeds_avoid_training_and_heldout_and_can_be_turned_off():
    from diffsolve.tuning import VALIDATION_OFFSET
    from diffsolve.tuning.settings import validation_seeds as _validation_seeds

    assert _validation_seeds([0, 1], [VALIDATION_OFFSET], None) == [VALIDATION_OFFSET + 1, VALIDATION_OFFSET + 2]
    with pytest.raises(DiffsolveError, match="validation_seeds .* overlap"):
        _validation_seeds([0], [1], [1])
    plain = tune("gmm-2d", "dpmpp2m", 4, train_seeds=[3], heldout_seeds=None, n=32, candidates=12, max_evals=20,
                 validation_seeds=[], **KW)
    assert plain.validation_error is None and plain.validation_seeds == []
    assert plain.chosen != "start" or plain.train_error == plain.start_train_error
