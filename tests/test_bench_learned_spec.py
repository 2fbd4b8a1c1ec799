"""The bench's `learned` grid spec: a solver learned per cell on training draws, measured on the cell's own draws."""

import pytest

import diffsolve as ds
import diffsolve.bench  # noqa: F401  (registers the bench's per-cell grid specs)
import diffsolve.tuning
from diffsolve.bench import expand_run, metrics
from diffsolve.errors import GridError, SolverError
from diffsolve.solvers.learned import LearnedSolver

SPEC = "learned:n=32:candidates=12:max_evals=4"
SEED = 2
KW = dict(solvers=["ipndm:order=3"], grids=[SPEC], nfe=[4], variables=["sigma"], n=16, seeds=[SEED], progress=False)


def _counting(monkeypatch):
    """Count the calls of diffsolve.tuning.learn (the bench's learned spec looks it up there at each learning)."""
    calls = []
    real = diffsolve.tuning.learn

    def counted(*a, **k):
        calls.append(a)
        return real(*a, **k)
    monkeypatch.setattr(diffsolve.tuning, "learn", counted)
    return calls


def test_learned_cell_is_ds_solvers_learn_then_sample_on_the_cells_draws(tmp_path, monkeypatch):
    calls = _counting(monkeypatch)
    rec = ds.bench.run("gmm-2d", out=tmp_path, **KW).records[0]
    assert rec["status"] == "ok", rec["error"]
    assert len(calls) == 1  # the plan and the cost fields share one learning (memoised)
    learned = ds.solvers.learn("gmm-2d", "ipndm", 4, order=3, train_seeds=[SEED + 1000], heldout_seeds=None, n=32,
                               candidates=12, max_evals=4, variable="sigma", eval_times=True, cache_dir=False,
                               progress=False)
    assert learned.chosen == "weights" and learned.solver.learned  # the learned weights run, not the base method's
    prob = ds.problems.get("gmm-2d")
    model = prob.model(prob.default_schedule())
    x_T = prob.x_T(16, SEED, model.schedule)
    start, end = learned.grid.points[0], learned.grid.points[-1]
    sol = ds.sample(model, model.from_vp(x_T, start), solver=learned, nfe=4)
    assert sol.nfe == rec["nfe"] == 4
    ref = prob.reference(x_T, model.schedule, rtol=1e-10, atol=1e-10)
    assert rec["rmse"] == pytest.approx(metrics.rmse(model.to_vp(sol.x, end), ref), rel=1e-12)  # (0.0 apart)
    base = ds.sample(model, model.from_vp(x_T, start), solver="ipndm", grid=learned.grid, order=3)
    assert abs(metrics.rmse(model.to_vp(base.x, end), ref) - rec["rmse"]) > 1e-6  # the weights matter here

    files = list((tmp_path / "cache").glob("learned-*.json"))
    assert len(files) == 1
    saved = LearnedSolver.load(files[0], model.schedule, prob.fingerprint())
    assert saved.grid.t.tolist() == learned.grid.t.tolist() and saved.solver.deltas == learned.solver.deltas
    assert saved.learning["train_seeds"] == [SEED + 1000] and saved.learning["heldout_seeds"] == []
    assert rec["tune_nfe"] == saved.cost["nfe"] > 0 and rec["tune_seconds"] == saved.cost["seconds"] > 0
    assert rec["tune_cpu_seconds"] == saved.cost["cpu_seconds"] and rec["tune_chosen"] == saved.chosen == "weights"
    assert rec["tune_train_error"] == saved.errors["train"] > 0 and rec["tune_start"] == saved.errors["start"]["grid"]


def test_a_rerun_reads_the_cached_learned_solver(tmp_path, monkeypatch):
    calls = _counting(monkeypatch)
    first = ds.bench.run("gmm-2d", out=tmp_path, **KW).records[0]
    (path,) = (tmp_path / "cache").glob("learned-*.json")
    stamp = path.stat().st_mtime_ns
    (tmp_path / "results.jsonl").unlink()  # the cell runs again: it must read the learned solver, not learn again
    again = ds.bench.run("gmm-2d", out=tmp_path, **KW)
    rec = again.records[0]
    assert len(calls) == 1 and path.stat().st_mtime_ns == stamp
    assert rec["status"] == "ok" and rec["rmse"] == first["rmse"] and rec["tune_nfe"] == first["tune_nfe"]
    assert "learning cost per cell, mean of 1" in again.markdown()
    other = ds.bench.run("gmm-2d", out=tmp_path, **{**KW, "grids": [SPEC + ":conditions=2"]})  # another key
    assert len(calls) == 2 and len(list((tmp_path / "cache").glob("learned-*.json"))) == 2
    assert other.records[0]["rmse"] != first["rmse"]


@pytest.mark.parametrize("solver", ["heun", "ddim", "euler"])
def test_a_solver_without_learnable_weights_is_refused_before_any_cell(solver):
    with pytest.raises(SolverError, match=rf"solver '{solver}' has no learnable multistep weights.*use ipndm.*"
                                          rf"drop '{solver}'"):
        expand_run({"problem": "gmm-2d", "solvers": ["ipndm", solver], "grids": ["logsnr", "learned"], "nfe": [4],
                    "variables": ["sigma"]})


def test_learned_spec_cells_and_their_checks():
    cells = expand_run({"problem": "gmm-2d", "solvers": ["ipndm", "dopri5"], "grids": ["tuned", "learned"],
                        "nfe": [4, 6], "variables": ["sigma"], "tols": [1e-3]})
    assert sorted((c.solver, c.grid, c.nfe) for c in cells) == [
        ("dopri5", "adaptive", 0), ("ipndm", "learned", 4), ("ipndm", "learned", 6), ("ipndm", "tuned", 4),
        ("ipndm", "tuned", 6)]  # an adaptive solver keeps its own cells beside a learned grid
    with pytest.raises(GridError, match="conditions 1 or 2"):
        expand_run({"problem": "gmm-2d", "solvers": ["ipndm"], "grids": ["learned:conditions=3"], "nfe": [4]})
    with pytest.raises(GridError, match="takes no parameter 'rho'"):
        ds.grids.parse("learned:rho=3")
    with pytest.raises(GridError, match="takes no parameter 'conditions'"):
        ds.grids.parse("tuned:conditions=2")


def test_learned_as_a_grid_elsewhere_points_to_the_bench_and_tune_learn():
    prob = ds.problems.get("gmm-2d")
    model = prob.model(prob.default_schedule())
    with pytest.raises(GridError, match=r"learned per benchmark cell \(diffsolve bench --grid learned\).*"
                                        r"diffsolve tune … --learn --out l.json.*solver='file:l.json'"):
        ds.sample(model, prob.x_T(4, 0, model.schedule), solver="ipndm", nfe=4, grid="learned")
    with pytest.raises(GridError, match="learned per benchmark cell"):
        ds.grids.build("learned:n=32", model.schedule, 4)
