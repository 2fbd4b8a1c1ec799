"""Benchmark machinery: metrics, suites, the resumable sweep, reports."""

from __future__ import annotations

import json
import math

import pytest
import torch

from diffsolve.bench import Inputs, ResultStore, Suite, expand_run, metrics, parse_solver, report, run_sweep
from diffsolve.errors import DiffsolveError, SolverError

F64 = torch.float64
SMALL = {"problem": "gmm-2d", "n": 32, "solvers": ["euler", "heun"], "grids": ["logsnr"],
         "variables": ["sigma", "t"], "nfe": [2, 4, 8, 16]}


def test_rmse_rel_err_and_max_err_on_known_values():
    ref = torch.zeros(4, 3, dtype=F64) + 1.0
    x = ref.clone()
    x[0] += 2.0  # one sample off by 2 in every coordinate
    assert metrics.rmse(x, ref) == pytest.approx(math.sqrt(4 * 3 / 12))
    assert metrics.rel_err(x, ref) == pytest.approx(math.sqrt(12) / math.sqrt(12))
    assert metrics.max_err(x, ref) == pytest.approx(2.0)


def test_sliced_w2_of_a_shift_is_the_projected_shift():
    """SW2(a, a + c)² = mean_θ (θ·c)² exactly, and SW2(a, permuted a) = 0."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(100, 5, generator=g, dtype=F64)
    c = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=F64)
    dirs = metrics.projections(5, 64, seed=3)
    assert metrics.sliced_w2(a, a + c, dirs) == pytest.approx(float(torch.sqrt(((c @ dirs) ** 2).mean())), rel=1e-12)
    assert metrics.sliced_w2(a, a[torch.randperm(100, generator=g)], dirs) == pytest.approx(0.0, abs=1e-14)
    with pytest.raises(DiffsolveError, match="equal dimension"):  # unequal counts are fine (tests/test_metrics.py)
        metrics.sliced_w2(a, a[:, :3])


def test_fitted_order_uses_the_asymptotic_range_above_the_floor():
    nfe = [5, 10, 20, 40, 80, 160]
    err = [1.0, 0.9, 0.5, 3.0 * 40**-2, 3.0 * 80**-2, 1e-13]  # pre-asymptotic head, a floor point at the end
    order, used = metrics.fitted_order(nfe, err, last=2, floor=1e-12)
    assert order == pytest.approx(2.0, abs=1e-12)
    assert used == [40, 80]
    assert metrics.fitted_order([10], [0.1]) == (None, [10.0])


def test_suite_expansion_keys_and_solver_options():
    cells = expand_run({**SMALL, "solvers": ["unipc", "unipc:order=2", {"name": "unipc", "options": {"order": 4}}]})
    # exponential integrators step in λ: they expand in λ only, whatever the run's variables (here σ̄ and t)
    assert len(cells) == 3 * 1 * 4 and {c.variable for c in cells} == {"lambda"}
    assert len({c.key for c in cells}) == len(cells)  # options are part of the key
    assert parse_solver("unipc:variant=bh2:order=3") == ("unipc", {"variant": "bh2", "order": 3})
    # a bool option reads true/false/1/0 in any case (the labels of the committed results write 1), as a bool
    for text, value in (("1", True), ("0", False), ("true", True), ("False", False)):
        assert parse_solver(f"dpmpp2m:lower_order_final={text}") == ("dpmpp2m", {"lower_order_final": value})
    assert parse_solver("ipndm:order=1") == ("ipndm", {"order": 1})  # an int option keeps 1 an int
    with pytest.raises(SolverError, match="lower_order_final must be True or False"):
        expand_run({**SMALL, "solvers": ["unipc:lower_order_final=2"]})
    one = [c for c in cells if c.options][0]
    assert one.options_label == "order=2" and one.solver_label == "unipc[order=2]"
    with pytest.raises(SolverError, match="takes no option"):
        expand_run({**SMALL, "solvers": ["heun:foo=1"]})
    for bad in ("ddim:eta=NaN", "dpmpp2m:threshold=Infinity", "ddim:eta=\"abc\"", "unipc:prediction=\"noise\""):
        with pytest.raises(SolverError, match="must be|renamed"):  # values are checked before any cell runs
            expand_run({**SMALL, "solvers": [bad]})
    # fields at their defaults stay out of the key (new fields keep old stores valid)
    plain, timed = expand_run({**SMALL, "nfe": [4], "variables": ["t"], "solvers": ["euler"]})[0], \
        expand_run({**SMALL, "nfe": [4], "variables": ["t"], "solvers": ["euler"], "repeats": 3})[0]
    assert "repeats" not in plain.key and '"repeats":3' in timed.key and "dtype" not in plain.key
    with pytest.raises(SolverError, match="valid solver names are: .*heun"):
        expand_run({**SMALL, "solvers": ["nope"]})
    with pytest.raises(DiffsolveError, match="unknown suite key"):
        Suite.from_dict({**SMALL, "nfes": [1]})
    mixed = Suite.from_dict({**SMALL, "nfe": [4], "run": [{"problem": "gmm-64", "solver": "unipc:variant=bh1"}]})
    assert {(c.problem, c.solver_label) for c in mixed.cells} == {("gmm-64", "unipc[variant=bh1]")}
    default = Suite.load("default")
    assert {c.variable for c in default.cells} == {"t", "sigma", "lambda"}
    assert {"euler", "heun"} <= {c.solver for c in default.cells}
    assert Suite.load("default", {"n": 8}).cells[0].n == 8


def test_interrupted_sweep_resumes_and_runs_every_cell_exactly_once(tmp_path):
    """Interrupt after 3 fresh cells, rerun: each cell is stored once and the first 3 are not recomputed."""
    cells = expand_run(SMALL)
    path = tmp_path / "results.jsonl"
    fresh_first: list[str] = []

    def stop_after_three(rec, fresh):
        fresh_first.append(rec["key"])
        if len(fresh_first) == 3:
            raise KeyboardInterrupt

    inputs = Inputs()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cells, path, progress=False, on_record=stop_after_three, inputs=inputs)
    assert len(path.read_text().splitlines()) == 3
    # a kill in the middle of a write leaves a partial line: it is dropped on reopening
    with open(path, "a") as f:
        f.write('{"key": "half-writ')
    seen: list[tuple[str, bool]] = []
    records = run_sweep(cells, path, progress=False, on_record=lambda r, fresh: seen.append((r["key"], fresh)),
                        inputs=inputs)
    keys = [json.loads(line)["key"] for line in path.read_text().splitlines()]
    assert sorted(keys) == sorted(c.key for c in cells) and len(keys) == len(set(keys))
    assert {k for k, fresh in seen if not fresh} == set(fresh_first)
    assert [r["key"] for r in records] == [c.key for c in cells]
    # a third run computes nothing
    again: list[bool] = []
    run_sweep(cells, path, progress=False, on_record=lambda r, fresh: again.append(fresh))
    assert again == [False] * len(cells)


def test_failed_cells_are_recorded_and_the_sweep_goes_on(tmp_path):
    """Cells made by hand skip expand_run's up-front plan check: a budget below heun's minimum fails its cell at run
    time, recorded, and the sweep goes on."""
    import dataclasses

    cells = expand_run(SMALL)
    cells += [dataclasses.replace(c, nfe=1) for c in cells if c.solver == "heun" and c.nfe == 2]
    records = run_sweep(cells, tmp_path / "r.jsonl", progress=False)
    bad = [r for r in records if r["status"] == "failed"]
    assert [(r["solver"], r["nfe_target"]) for r in bad] == [("heun", 1), ("heun", 1)]
    assert "below what solver 'heun' needs" in bad[0]["error"] and bad[0]["rmse"] is None
    ok = [r for r in records if r["status"] == "ok"]
    assert all(r["nfe"] == r["nfe_target"] for r in ok)  # euler and heun spend even budgets exactly
    assert all(r["sw2_floor"] > 0 and r["ref_err"] < 1e-9 for r in ok)
    store = ResultStore(tmp_path / "r.jsonl")
    assert all(store.get(r["key"])["status"] == r["status"] for r in records)


def test_reports_table_csv_plot_and_orders(tmp_path):
    run = {**SMALL, "solvers": ["euler", "heun"], "variables": ["sigma"], "nfe": [50, 100, 200, 400], "n": 16}
    records = run_sweep(expand_run(run), tmp_path / "r.jsonl", progress=False)
    by = {s.solver: s for s in report.series(records)}
    assert by["euler"].order()[0] == pytest.approx(1.0, abs=0.1)
    assert by["heun"].order()[0] == pytest.approx(2.0, abs=0.1)
    table = report.markdown(records)
    assert "| euler / logsnr / σ̄ |" in table and "order" in table
    report.write_csv(records, tmp_path / "r.csv")
    assert len((tmp_path / "r.csv").read_text().splitlines()) == len(records) + 1
    report.plot(records, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_killed_cli_sweep_resumes_with_every_cell_once(tmp_path):
    """SIGKILL the CLI mid-sweep, rerun it: every cell is in results.jsonl exactly once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "diffsolve.cli", "bench", "--problem", "gmm-2d", "--solver", "euler,heun",
            "--variable", "t,sigma,lambda", "--nfe", "50,100,200,400,800", "--n", "64", "--no-progress",
            "--no-report", "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results = tmp_path / "results.jsonl"
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not results.exists() or len(results.read_bytes().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = len(results.read_bytes().splitlines())
    assert 3 <= stored < 30
    assert subprocess.run(args, env=env, capture_output=True).returncode == 0
    keys = [json.loads(line)["key"] for line in results.read_text().splitlines()]
    assert len(keys) == 30 and len(set(keys)) == 30


def test_adaptive_solvers_get_one_cell_per_tolerance(tmp_path):
    run = {**SMALL, "solvers": ["dopri5"], "variables": ["lambda"], "tols": [1e-3, 1e-7]}
    cells = expand_run(run)
    assert [(c.grid, c.nfe, c.tol) for c in cells] == [("adaptive", 0, 1e-3), ("adaptive", 0, 1e-7)]
    loose, tight = run_sweep(cells, tmp_path / "r.jsonl", progress=False)
    assert loose["status"] == tight["status"] == "ok" and loose["steps"] is None
    assert tight["nfe"] > loose["nfe"] > 0 and tight["rmse"] < 1e-5 < loose["rmse"]
    assert "| dopri5 / adaptive / λ |" in report.markdown([loose, tight])
    with pytest.raises(DiffsolveError, match="tols"):
        expand_run({**run, "solvers": ["dopri5:rtol=1e-3"]})


def test_references_are_cached_on_disk_by_problem_schedule_tolerance_and_x_T(tmp_path, monkeypatch):
    from diffsolve import problems

    cell = expand_run({**SMALL, "solvers": ["euler"], "variables": ["t"], "nfe": [4]})[0]
    ref, err = Inputs(cache_dir=tmp_path).reference(cell)
    assert len(list(tmp_path.glob("reference-*.pt"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("the cached reference should have been used")

    gm = problems.get(cell.problem)
    monkeypatch.setattr(gm, "reference", boom)
    ref2, err2 = Inputs(cache_dir=tmp_path).reference(cell)
    assert torch.equal(ref, ref2) and err == err2
    other = expand_run({**SMALL, "solvers": ["euler"], "variables": ["t"], "nfe": [4], "seeds": [1]})[0]
    with pytest.raises(AssertionError, match="cached reference"):
        Inputs(cache_dir=tmp_path).reference(other)  # another x_T: not in the cache
