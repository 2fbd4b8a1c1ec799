"""One report: `diffsolve bench` and `ds.bench.run` write the same tables (SDE strong/weak tables included), every
--format is the report in another form, a merged job array reports its rows as a single run does, and `diffsolve
tune` hands `ds.grids.tune` only what was given (the same defaults)."""

from __future__ import annotations

import csv
import io
import json

import pytest

import diffsolve as ds
from diffsolve.bench.store import MemoryStore, ResultStore
from diffsolve.cli import main
from diffsolve.errors import DiffsolveError

SUITE = """
problem = "gmm-2d"
n = 16
nfe = [4, 8]
variables = ["t"]
grids = ["logsnr"]
params = {ref_steps = 64}  # the SDE cells' fine reference: enough for a test of the report

[[run]]
solvers = ["euler", "heun", "euler_maruyama"]
"""


def test_the_cli_and_ds_bench_run_write_the_same_report_with_the_sde_tables(tmp_path, capsys):
    (tmp_path / "sde.toml").write_text(SUITE)
    assert main(["bench", "--suite", str(tmp_path / "sde.toml"), "--no-progress", "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    res = ds.bench.run("gmm-2d", solvers=["euler", "heun", "euler_maruyama"], variables=["t"], nfe=[4, 8], n=16,
                       params={"ref_steps": 64}, out=tmp_path / "py", progress=False)
    table = (tmp_path / "cli" / "table.md").read_text()
    assert "**strong error**" in table and "**weak error**" in table and "| euler / logsnr / t |" in table
    assert (tmp_path / "py" / "table.md").read_text() == table == res.markdown() == printed[:-1]
    names = {p.name for p in (tmp_path / "cli").iterdir()} - {"results.jsonl.lock", "cache"}
    assert names == {p.name for p in (tmp_path / "py").iterdir()} - {"results.jsonl.lock", "cache"}
    assert {"ode_vs_sde_sw2.png", "strong_vs_nfe.png", "rmse_vs_nfe.png", "results.csv"} <= names


@pytest.mark.parametrize("fmt", ["md", "csv", "json"])
def test_each_format_is_the_report_in_another_form(fmt, tmp_path, capsys):
    args = ["bench", "--problem", "gmm-2d", "--solver", "euler,heun", "--variable", "t,sigma", "--nfe", "4,8",
            "--n", "8", "--no-progress", "--out", str(tmp_path), "--format", fmt]
    assert main(args) == 0
    out = capsys.readouterr().out
    stored = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    if fmt == "md":
        assert out == (tmp_path / "table.md").read_text() + "\n"
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert out == (tmp_path / "results.csv").read_bytes().decode()
        assert [(r["solver"], r["variable"], float(r["rmse"])) for r in rows] == [
            (r["solver"], r["variable"], r["rmse"]) for r in stored]
    else:  # the cells as they finished, then the best-per-NFE rows (kind "best")
        lines = [json.loads(line) for line in out.splitlines()]
        assert lines[:len(stored)] == stored and lines[len(stored):] == ds.bench.api.best_mod.best_records(stored)
        assert {r["kind"] for r in lines[len(stored):]} == {"best"}
    assert main([*args, "--no-report"]) == 0  # a rerun from the store prints the same
    assert capsys.readouterr().out == out


def test_a_merged_job_array_reports_its_rows_in_the_order_of_a_single_run(tmp_path, capsys):
    axes = ["bench", "--problem", "gmm-2d", "--solver", "euler,heun,dpmpp2m", "--variable", "t,sigma", "--nfe", "4,8",
            "--n", "8", "--no-progress"]
    assert main([*axes, "--out", str(tmp_path / "one")]) == 0
    single = capsys.readouterr().out
    for i in (1, 0, 2):  # the jobs finish in any order
        assert main([*axes, "--shard", f"{i}/3", "--out", str(tmp_path / "arr"), "--no-report"]) == 0
    capsys.readouterr()
    assert main([*axes, "--merge", str(tmp_path / "arr")]) == 0
    assert capsys.readouterr().out == single
    assert (tmp_path / "arr" / "table.md").read_text() == (tmp_path / "one" / "table.md").read_text()

    def keys(folder):
        return [json.loads(x)["key"] for x in (tmp_path / folder / "results.jsonl").read_text().splitlines()]

    assert keys("arr") == keys("one")  # merge_shards deals the shards' lines back: a single run's order


def test_merge_shards_is_public_idempotent_and_in_a_single_runs_order(tmp_path):
    cells = ds.bench.expand_run({"problem": "gmm-2d", "n": 8, "solvers": ["euler"], "grids": ["logsnr"],
                                 "variables": ["t"], "nfe": [2, 4, 6, 8, 10]})
    records = ds.bench.run_sweep(cells, MemoryStore(), progress=False)
    for rank in range(2):
        shard = ResultStore(tmp_path / "results.jsonl", shard=f"rank{rank}-of-2")
        for rec in records[rank::2]:
            shard.append(rec)
    store = ResultStore(tmp_path / "results.jsonl")
    assert store.merge_shards() == 5 and store.merge_shards() == 5
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["key"] for x in lines] == [c.key for c in cells]
    assert not list(tmp_path.glob("results.shard-*"))


def test_the_in_memory_store_is_a_result_store_without_files(tmp_path):
    store = MemoryStore()
    assert isinstance(store, ResultStore) and store.path is None and store.files() == [] and store.records == {}
    cells = ds.bench.expand_run({"problem": "gmm-2d", "n": 8, "solvers": ["euler"], "grids": ["logsnr"],
                                 "variables": ["t"], "nfe": [4]})
    (rec,) = ds.bench.run_sweep(cells, store, progress=False)
    assert store.get(cells[0].key) is rec and store.merge_shards() == 1
    with store.claim("x") as mine:
        assert mine


@pytest.mark.parametrize("kw,text", [({"solvers": "euler"}, "solvers must be a list"), ({"nfe": 10}, "nfe=[10]"),
                                     ({"threads": 0}, "threads must be an integer >= 1")])
def test_bench_run_refuses_a_lone_value_where_a_list_is_meant(kw, text):
    with pytest.raises(DiffsolveError, match=text.replace("[", r"\[").replace("]", r"\]")):
        ds.bench.run("gmm-2d", progress=False, **kw)


def test_tune_on_the_command_line_passes_only_what_was_given(tmp_path, monkeypatch, capsys):
    import inspect

    import diffsolve.tuning

    seen = {}

    def record(problem, solver, nfe, **kw):
        seen.update(problem=problem, solver=solver, nfe=nfe, **kw)
        raise DiffsolveError("recorded")

    defaults = {k: p.default for k, p in inspect.signature(diffsolve.tuning.tune).parameters.items()}
    monkeypatch.setattr(diffsolve.tuning, "tune", record)
    assert main(["tune", "--problem", "gmm-2d", "--solver", "ipndm:order=3", "--nfe", "6",
                 "--out", str(tmp_path / "g.json")]) == 2
    assert seen == {"problem": "gmm-2d", "solver": "ipndm", "nfe": 6, "order": 3}  # tune's own defaults for the rest
    main(["tune", "--problem", "gmm-2d", "--solver", "ipndm", "--nfe", "6", "--train-seeds", "3,4",
          "--heldout-seeds", "", "--n", "64", "--no-eval-times", "--out", str(tmp_path / "g.json")])
    assert {k: seen[k] for k in ("train_seeds", "heldout_seeds", "n", "eval_times")} == {
        "train_seeds": [3, 4], "heldout_seeds": [], "n": 64, "eval_times": False}
    capsys.readouterr()
    monkeypatch.undo()
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    assert f"(default {defaults['n']})" in helptext and f"(default {defaults['candidates']})" in helptext
    assert f"(default {','.join(map(str, defaults['train_seeds']))})" in helptext
