"""The `diffsolve bench` command line: JSON lines, help, unknown names, resumable output folder."""

from __future__ import annotations

import json

import pytest

from diffsolve.cli import main

ARGS = ["bench", "--problem", "gmm-2d", "--solver", "euler,heun", "--grid", "logsnr", "--variable", "sigma,lambda",
        "--nfe", "4,8", "--n", "16", "--json", "--no-progress"]
TYPES = {"problem": str, "solver": str, "grid": str, "variable": str, "nfe": int, "nfe_target": int, "steps": int,
         "rmse": float, "rel_err": float, "sw2": float, "sw2_floor": float, "seconds": float, "seed": int,
         "status": str, "key": str, "options": dict}


def test_bench_json_lines_have_the_documented_keys_and_types(tmp_path, capsys):
    assert main(ARGS + ["--out", str(tmp_path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rows = [r for r in lines if r["kind"] != "best"]  # the cells, then the best-per-NFE rows
    assert len(rows) == 2 * 2 * 2 and [r["kind"] for r in lines[len(rows):]] == ["best"] * 2
    for row in rows:
        for key, typ in TYPES.items():
            assert isinstance(row[key], typ), (key, row[key])
    assert {(r["solver"], r["variable"], r["nfe"]) for r in rows} == {
        (s, v, n) for s in ("euler", "heun") for v in ("sigma", "lambda") for n in (4, 8)}
    assert (tmp_path / "results.csv").exists() and (tmp_path / "rmse_vs_nfe.png").exists()
    # rerun: the same lines come from the store, nothing is appended
    assert main(ARGS + ["--out", str(tmp_path)]) == 0
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == lines
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == len(rows)


@pytest.mark.parametrize("flag,value,valid", [
    ("--solver", "hewn", "heun"), ("--grid", "logsnrr", "logsnr"), ("--variable", "sigmas", "lambda"),
    ("--problem", "gmm-3d", "gmm-64"), ("--suite", "nope", "default"),
])
def test_unknown_names_are_clear_errors_listing_the_valid_ones(flag, value, valid, capsys):
    assert main(["bench", flag, value]) == 2
    err = capsys.readouterr().err
    assert repr(value) in err and valid in err


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--problem", "--solver", "--grid", "--variable", "--nfe", "--suite", "--schedule", "--seeds", "--n",
                "--dtype", "--tols", "--repeats", "--out", "--json", "--fresh", "--retry-failed", "--no-progress",
                "--no-report", "--list", "--shape", "--fingerprint", "--ref-tol", "--threads", "--format", "--shard",
                "--merge", "--repair"):
        assert opt in out
    assert "Exit status" in out and "file.py:attr" in out
    assert main(["bench", "--suite", "default", "--solver", "euler"]) == 2
    assert "not both" in capsys.readouterr().err


def _failing_at_run(monkeypatch, fails) -> None:
    """Cells for which fails(cell) fail when they run (a budget or a grid too bad is refused before any cell runs:
    only the run reveals these, e.g. a network that returns NaN at some time)."""
    from diffsolve.bench import cells
    from diffsolve.errors import ModelError

    solve_cell = cells.solve_cell

    def maybe(cell, inputs, x_T):
        if fails(cell):
            raise ModelError(f"the network returned NaN at nfe={cell.nfe} (a test's failing cell)")
        return solve_cell(cell, inputs, x_T)

    monkeypatch.setattr(cells, "solve_cell", maybe)


def test_all_failed_sweep_prints_the_failures_and_exits_4_without_a_traceback(tmp_path, capsys, monkeypatch):
    _failing_at_run(monkeypatch, lambda cell: True)
    args = ["bench", "--problem", "gmm-2d", "--solver", "rk4", "--nfe", "4,8", "--variable", "t", "--n", "8",
            "--no-progress", "--out", str(tmp_path)]
    assert main(args) == 4
    err = capsys.readouterr().err
    assert "every cell failed (2)" in err and "Traceback" not in err
    assert err.count("the network returned NaN") == 2 and "nfe=4" in err and "nfe=8" in err
    assert not (tmp_path / "rmse_vs_nfe.png").exists() and not (tmp_path / "table.md").exists()


def test_a_budget_below_a_solvers_minimum_is_refused_before_any_cell_runs(tmp_path, capsys):
    args = ["bench", "--problem", "gmm-2d", "--solver", "euler,rk4", "--nfe", "2,3", "--variable", "t", "--n", "8",
            "--no-progress", "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "solver 'rk4', grid 'logsnr', nfe 2: an NFE budget of 2 is below" in err
    assert not (tmp_path / "results.jsonl").exists()


def test_partly_failed_sweep_lists_the_failed_cells_and_exits_3(tmp_path, capsys, monkeypatch):
    _failing_at_run(monkeypatch, lambda cell: cell.solver == "rk4" and cell.nfe == 4)
    args = ["bench", "--problem", "gmm-2d", "--solver", "rk4,euler", "--nfe", "4,8", "--variable", "t", "--n", "8",
            "--no-progress", "--out", str(tmp_path)]
    assert main(args) == 3
    captured = capsys.readouterr()
    assert "1 of 4 cells failed" in captured.err and "rk4 logsnr t nfe=4" in captured.err
    assert captured.out.count("| rk4 / logsnr / t |") == 2  # one row per table (rmse, sw2), with 'failed' in it
    assert "failed" in captured.out and "Legend:" in captured.out and "reference error" in captured.out
    wrote = [line for line in captured.err.splitlines() if line.startswith("wrote ")][0]
    for name in ("results.jsonl", "results.csv", "table.md", "rmse_vs_nfe.png", "sw2_vs_nfe.png"):
        assert str(tmp_path / name) in wrote and (tmp_path / name).exists()


def test_version_and_python_dash_m(capsys):
    import subprocess
    import sys

    import diffsolve

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"diffsolve {diffsolve.__version__}"
    done = subprocess.run([sys.executable, "-m", "diffsolve", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"diffsolve {diffsolve.__version__}"
    # `python -m diffsolve.cli` runs in tests/test_concurrency.py and tests/test_cli_handler.py


def test_grid_specs_on_the_command_line(tmp_path, capsys):
    args = ["bench", "--problem", "gmm-2d", "--solver", "euler", "--grid", "karras:rho=5,custom:1.0,0.5,0.1,0.001",
            "--nfe", "3,4", "--variable", "t", "--n", "8", "--no-progress", "--json", "--no-report", "--out",
            str(tmp_path)]
    assert main(args) == 0  # the custom grid at its own cost, 3 (which the NFE list must hold), karras at each
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rows = [r for r in rows if r["kind"] != "best"]
    assert sorted((r["grid"], r["nfe"]) for r in rows) == [("custom:1.0,0.5,0.1,0.001", 3), ("karras:rho=5", 3),
                                                          ("karras:rho=5", 4)]
    assert main(["bench", "--grid", "karras:rho", "--out", str(tmp_path)]) == 2
    assert "'karras:rho'" in capsys.readouterr().err


BARE = """
import torch
import diffsolve as ds


class Net(torch.nn.Module):  # no `shape` attribute: the command line must be told the sample's shape
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, x, t):
        return 0.1 * self.lin(x)


model = ds.EpsModel(Net(), ds.VPLinear())
"""


def test_sample_takes_the_shape_of_a_bare_model(tmp_path, capsys):
    import torch

    (tmp_path / "bare.py").write_text(BARE)
    args = ["sample", "--problem", f"{tmp_path / 'bare.py'}:model", "--solver", "euler", "--nfe", "4", "--n", "5",
            "--no-progress", "--out", str(tmp_path / "s")]
    assert main(args) == 2
    assert "--shape" in capsys.readouterr().err and not (tmp_path / "s").exists()  # the message names the flag
    assert main([*args, "--shape", "2"]) == 0
    x = torch.load(tmp_path / "s" / "samples.pt")["x"]
    assert x.shape == (5, 2) and bool(torch.isfinite(x).all())
