"""Wrong inputs at the command line's boundaries (issue 21): a table per boundary, generated where possible.

Every row runs `main(argv)` in-process and expects exit status 2 with exactly one line on stderr,
`diffsolve CMD: error: …`, holding the named text, no traceback, and (where a destination is wrong) no work done.
Boundaries: the checked options of every subcommand (from each module's OPTIONS), destinations, the user's
files named by --problem, results lines (from the store's schema), sample manifests, checkpoints. Then
hypothesis: the argument space of bench, tune and sample (exit 0, 2, 3 or 4, never a traceback), and fuzzed JSON
through the results-line reader and the grid-file reader.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from diffsolve import grids
from diffsolve.bench import store as store_mod
from diffsolve.bench.api import report_csv, report_markdown
from diffsolve.cli import bench, likelihood, main, sample, tune
from diffsolve.errors import DiffsolveError

BASE = {
    "bench": ["bench", "--problem", "gmm-2d", "--solver", "euler", "--variable", "t", "--nfe", "4", "--n", "8",
              "--no-progress", "--no-report", "--out", "{tmp}/b"],
    "tune": ["tune", "--problem", "gmm-2d", "--solver", "ipndm", "--nfe", "4", "--n", "8", "--candidates", "8",
             "--max-evals", "4", "--out", "{tmp}/g.json"],
    "sample": ["sample", "--problem", "gmm-2d", "--solver", "euler", "--nfe", "4", "--n", "4", "--no-progress",
               "--out", "{tmp}/s"],
    "likelihood": ["likelihood", "--problem", "toy-2d"],
    "train": ["train", "toy-2d", "--steps", "1", "--out", "{tmp}/t.pt"],
}
UNWRITABLE = Path("/sys/diffsolve-test")  # a read-only file system, even for root
needs_read_only = pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs /sys, a file system no one writes to")


def run(argv: list[str], tmp: Path, capsys) -> tuple[int, str]:
    (tmp / "afile").write_text("x")
    rc = main([a.replace("{tmp}", str(tmp)) for a in argv])
    return rc, capsys.readouterr().err


def assert_one_error_line(rc: int, err: str, cmd: str, text: str) -> None:
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.startswith("diffsolve")]
    assert len(lines) == 1 and lines[0].startswith(f"diffsolve {cmd}: error: "), err
    assert text in lines[0] and "Traceback" not in err, err


# ---- arguments: each checked option of each subcommand, out of its range or not a number --------------------
def _argument_rows() -> list:
    rows = []
    for cmd, module in (("bench", bench), ("tune", tune), ("sample", sample), ("likelihood", likelihood)):
        for option in module.OPTIONS:
            below = f"{int(option.low) - 1}" if option.kind == "int" else "-1"
            bad = {below: f"got {float(below) if option.kind == 'float' else int(below)}", "abc": "invalid"}
            if option.kind == "float":
                bad.update({"nan": "got nan", "inf": "got inf"})
            if option.high is not None:  # above the bound: its message says why it is there (the doc)
                above = f"{int(option.high) * 1000 + 1}" if option.kind == "int" else "1e300"
                bad[above] = f"got {int(above) if option.kind == 'int' else float(above)} ({option.doc})"
            rows += [pytest.param(cmd, [*BASE[cmd], option.name, value], text, id=f"{cmd} {option.name} {value}")
                     for value, text in bad.items()]
    return rows


@pytest.mark.parametrize("cmd,argv,text", _argument_rows())
def test_an_option_out_of_range_is_one_error_line_naming_it(cmd, argv, text, tmp_path, capsys):
    rc, err = run(argv, tmp_path, capsys)
    assert_one_error_line(rc, err, cmd, text)
    assert argv[-2] in err


@pytest.mark.parametrize("axis", list(bench.DEFAULT_AXES))
@pytest.mark.parametrize("value", ["", " ", "a,,b"])
def test_an_empty_value_of_a_sweep_axis_is_one_error_line(axis, value, tmp_path, capsys):
    """'' (an unset shell variable) is not a request for the default sweep, and 5,,10 drops nothing silently."""
    argv = _without(BASE["bench"], f"--{axis}") if f"--{axis}" in BASE["bench"] else BASE["bench"]
    rc, err = run([*argv, f"--{axis}", value], tmp_path, capsys)
    assert_one_error_line(rc, err, "bench", f"--{axis} {value!r} has an empty value")
    assert f"leave --{axis} out for that default" in err and not (tmp_path / "b").exists()


GRID_TIMES = {"ascending": [0.001, 0.5, 1.0], "one": [1.0]}


def _grid_file(tmp: Path, kind: str) -> Path:
    import diffsolve as ds

    path = tmp / f"grid-{kind}.json"
    if kind == "cosine":
        ds.grids.save(ds.grids.logsnr(ds.VPCosine(), 4), path)
    elif kind in GRID_TIMES:
        path.write_text(json.dumps({"times": GRID_TIMES[kind], "schedule": ds.VPLinear().to_config()}))
    else:
        path.write_text(json.dumps({"times": [1.0, 0.5, 0.001], "schedule": ds.VPLinear().to_config()})
                        .replace("1.0,", "1e999,", 1))
    return path


UPFRONT = {  # a (solver, grid, NFE) combination whose plan is wrong → (its flags, the words of the one error line)
    "karras rho < 0": (["--solver", "heun", "--grid", "karras:rho=-1", "--nfe", "5"], "rho must be a finite number"),
    "custom times not monotone": (["--grid", "custom:1,0.5,0.7,0.001", "--nfe", "3"], "strictly monotone"),
    "a grid file of another schedule": (["--grid", "file:{cosine}", "--nfe", "4"], "was made for schedule VPCosine"),
    "1e999 in a grid file": (["--grid", "file:{inf}", "--nfe", "2"], "grid times must be finite"),
    "a grid file whose times ascend (E33)": (["--grid", "file:{ascending}", "--nfe", "2"],
                                             "needs grid times decreasing (noise → data), but the grid runs from "
                                             "t=0.001 to t=1"),
    "a grid file of one time (E36)": (["--grid", "file:{one}", "--nfe", "2"], "has 1 time(s); a grid needs at least "
                                                                             "two"),
    "ddim's eta beyond its per-step bound (C015)": (["--solver", "ddim:eta=2"], "ddim with eta=2.0 asks for a noise "
                                                                                "level above σ_t"),
    "a budget below heun's minimum": (["--solver", "heun", "--nfe", "1"], "an NFE budget of 1 is below"),
    "a budget beyond MAX_STEPS": (["--nfe", "1000000000"], "use at most 10000000 steps"),
    "an NFE a custom grid does not cost": (["--grid", "custom:1,0.5,0.001", "--nfe", "7"],
                                           "grid 'custom:1,0.5,0.001' has 2 steps but 7 were asked for"),
    "a custom grid's cost outside the NFE list (R2-c36)": (
        ["--solver", "euler", "--grid", "logsnr,custom:1,0.5,0.001", "--nfe", "7"],
        "grid 'custom:1,0.5,0.001' has its own times: solver 'euler' runs its 2 steps at nfe=2, which is not in the "
        "NFE list [7]; add 2 to the list (--nfe, or nfe in the suite), or run it in a sweep of its own without --nfe"),
}


@pytest.mark.parametrize("kind", list(UPFRONT))
def test_a_wrong_plan_is_one_error_line_before_any_cell_runs(kind, tmp_path, capsys):
    """The bench checks each (solver, grid, NFE) plan up front (diffsolve.plan, as the cell will make it), so these
    are exit 2 with the plan's message, not exit 4 with every cell failed."""
    flags, words = UPFRONT[kind]
    files = {kind: _grid_file(tmp_path, kind) for kind in ("cosine", "inf", *GRID_TIMES)}
    argv = BASE["bench"]
    for flag in flags[::2]:
        argv = _without(argv, flag) if flag in argv else argv
    rc, err = run([*argv, *(f.format(**files) for f in flags)], tmp_path, capsys)
    assert_one_error_line(rc, err, "bench", words)
    assert "(checked before any cell runs)" in err and not (tmp_path / "b" / "results.jsonl").exists()


@pytest.mark.parametrize("flags,words", [
    (["--solver", "dopri5", "--tols", "1e-16"], "every tol in 'tols' must be a finite number >= 1e-15 and < 1, got "
                                                "1e-16"),  # R2-c43: was exit 4, every cell failed
    (["--ref-tol", "1e-16"], "--ref-tol must be a finite number >= 1e-15 and < 1 or None, got 1e-16"),  # R2-c44
])
def test_a_tolerance_below_float64s_round_off_is_refused_before_any_work(flags, words, tmp_path, capsys):
    """Tolerances of adaptive cells and of the reference share the solvers' bound (diffsolve.checks.MIN_TOL)."""
    argv = BASE["bench"]
    for flag in flags[::2]:
        argv = _without(argv, flag) if flag in argv else argv
    rc, err = run([*argv, *flags], tmp_path, capsys)
    assert_one_error_line(rc, err, "bench", words)
    assert "float64's round-off" in err and not (tmp_path / "b" / "results.jsonl").exists()


def test_a_grid_with_its_own_times_runs_at_its_cost_without_nfe_or_with_it(tmp_path, capsys):
    base = _without(BASE["bench"], "--nfe")
    for extra in ([], ["--nfe", "2"]):
        rc, err = run([*base, "--grid", "custom:1,0.5,0.001", "--fresh", *extra], tmp_path, capsys)
        assert rc == 0, err
        rows = [json.loads(x) for x in (tmp_path / "b" / "results.jsonl").read_text().splitlines()]
        assert [(r["grid"], r["nfe_target"], r["nfe"]) for r in rows] == [("custom:1,0.5,0.001", 2, 2)]
    # beside a grid of budgets: at its cost when the NFE list holds it (with --nfe 2,7, logsnr runs at both)
    rc, err = run([*base, "--grid", "logsnr,custom:1,0.5,0.001", "--nfe", "2,7", "--fresh"], tmp_path, capsys)
    rows = [json.loads(x) for x in (tmp_path / "b" / "results.jsonl").read_text().splitlines()]
    assert rc == 0 and sorted((r["grid"], r["nfe"]) for r in rows) == [
        ("custom:1,0.5,0.001", 2), ("logsnr", 2), ("logsnr", 7)], err
    # ... and says, in one line, that it has no cell at the other NFEs (R2-c45: it was silent)
    assert "diffsolve bench: warning: grid 'custom:1,0.5,0.001' has its own times: solver 'euler' runs its 2 steps " \
           "at nfe=2 only, not at the run's other NFEs (7)" in err.splitlines(), err


TRAIN_BAD = [(["--lr", "1e300"], "lr must be a finite number > 0 and <= 1, got 1e+300 (Adam's learning rate: above 1"),
             (["--threads", "100000"], "--threads must be an integer >= 1 and <= "),
             (["--steps", "0"], "steps must be an integer >= 1"),
             (["--batch", "1000000000"], "batch must be an integer >= 1 and <= 65536, got 1000000000"),  # F56: OOM
             (["--steps", "100000000"], "steps must be an integer >= 1 and <= 1e+07, got 100000000"),
             (["--seed", "-1"], "seed must be an integer >= 0, got -1")]


@pytest.mark.parametrize("argv,text", TRAIN_BAD, ids=[" ".join(a) for a, _ in TRAIN_BAD])
def test_a_train_option_out_of_range_is_one_error_line_before_training(argv, text, tmp_path, capsys, monkeypatch):
    import os

    rc, err = run([*BASE["train"], *argv], tmp_path, capsys)
    assert_one_error_line(rc, err, "train", text)
    assert not (tmp_path / "t.pt").exists()
    if argv[0] == "--threads":
        assert f"this machine has {os.cpu_count()} core(s)" in err


BENCH_FLAGS_BAD = {  # flags that were accepted and ignored, or named the wrong thing → the words of the one error line
    "an NFE listed twice (A281/C008)": (["--nfe", "4,4"], "--nfe lists '4' more than once; give each value once"),
    "a variable listed twice (C028)": (["--variable", "t,t"], "--variable lists 't' more than once"),
    "--fresh with --repair (C071)": (["--fresh", "--repair"], "--fresh deletes OUT's stored results, which --repair"),
    "--fresh with --migrate (C068)": (["--fresh", "--migrate"],
                                      "--fresh deletes OUT's stored results, which --migrate"),
    "a solver option given twice (C015)": (["--solver", "ddim:eta=1:eta=2"],
                                           "solver option 'eta' is given twice in 'ddim:eta=1:eta=2'; give each option "
                                           "once"),
    "--shape for a problem with its own (C041)": (["--shape", "5"], "problem 'gmm-2d' has samples of shape (2,), but "
                                                                    "shape (5,) was given"),
    "--fingerprint '' (C042)": (["--fingerprint", ""], "fingerprint must be a non-empty string, got ''"),
    "--fingerprint for a problem that has its own (C042)": (["--fingerprint", "v2"],
                                                            "fingerprint 'v2' is for a problem given as a bare Model, "
                                                            "and no problem of this run is one (gmm-2d"),
    "--json with --format csv (C070)": (["--json", "--format", "csv"], "--json and --format csv ask for two outputs"),
    "--shard -1/2 (C066)": (["--shard", "-1/2"], "--shard takes i/n with 0 <= i < n (this job's index and the number "
                                                 "of jobs), got '-1/2'"),
    "a word among a custom grid's times (C022)": (["--grid", "custom:1,a,0.001"],
                                                  "grid spec 'custom:1,a,0.001': time 'a' is not a number"),
}


@pytest.mark.parametrize("kind", list(BENCH_FLAGS_BAD))
def test_a_bench_flag_that_cannot_apply_is_one_error_line_before_any_cell(kind, tmp_path, capsys):
    flags, words = BENCH_FLAGS_BAD[kind]
    argv = BASE["bench"]
    for flag in flags[::2]:
        argv = _without(argv, flag) if flag in argv else argv
    rc, err = run([*argv, *flags], tmp_path, capsys)
    assert_one_error_line(rc, err, "bench", words)
    assert not (tmp_path / "b" / "results.jsonl").exists()


@pytest.mark.parametrize("cmd", ["bench", "sample", "tune"])
def test_a_shape_other_than_a_problems_own_is_refused_naming_both(cmd, tmp_path, capsys, monkeypatch):
    """A282/C041/F17: --shape is for a bare Model; a registered problem's own shape (2,) wins only when equal."""
    import importlib

    if cmd != "tune":  # tune resolves its problem first thing in tuning.tune
        module, name = WORK[cmd]
        monkeypatch.setattr(importlib.import_module(module), name, lambda *a, **k: pytest.fail("work started"))
    rc, err = run([*BASE[cmd], "--shape", "3"], tmp_path, capsys)
    assert_one_error_line(rc, err, cmd, "problem 'gmm-2d' has samples of shape (2,), but shape (3,) was given; shape "
                                        "(--shape) is for a problem given as a bare Model")


BENCH_RUN_BAD = {  # ds.bench.run's arguments (A282, A283): the suite's checks, as the command line's
    "shape of another problem": ({"shape": (3,)}, "has samples of shape (2,), but shape (3,) was given"),
    "fingerprint a number": ({"fingerprint": 123}, "fingerprint must be a non-empty string, got 123"),
    "fingerprint of a registered problem": ({"fingerprint": "v2"}, "is for a problem given as a bare Model"),
}


@pytest.mark.parametrize("kind", list(BENCH_RUN_BAD))
def test_bench_run_refuses_a_shape_or_fingerprint_that_cannot_apply(kind):
    import diffsolve as ds

    kw, words = BENCH_RUN_BAD[kind]
    with pytest.raises(DiffsolveError, match=re.escape(words)):
        ds.bench.run("gmm-2d", solvers=["euler"], nfe=[4], n=8, progress=False, report=False, **kw)


def test_tols_without_an_adaptive_solver_is_a_one_line_warning(tmp_path, capsys):
    """C045: a warning, not an error: the sweep is valid (--nfe unused by adaptive solvers is not an error either),
    but the tolerances asked for measure nothing."""
    rc, err = run([*BASE["bench"], "--tols", "1e-3"], tmp_path, capsys)
    assert rc == 0, err
    assert "diffsolve bench: warning: tols (--tols) are the tolerances of adaptive solvers (dopri5, …), and no " \
           "solver of this suite is adaptive, so they are not used" in err.splitlines()[0], err
    rc, err = run([*_without(BASE["bench"], "--solver"), "--solver", "euler,dopri5", "--tols", "1e-3", "--fresh"],
                  tmp_path, capsys)
    assert rc == 0 and "warning" not in err, err


def test_no_command_is_one_line_naming_the_commands(capsys):
    """C073: was the whole help (16 lines)."""
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["diffsolve: error: give a command, one of bench, train, likelihood, tune, sample (see "
                                "`diffsolve --help`)"], err


def test_likelihood_probes_with_the_exact_divergence_is_refused_naming_the_option(tmp_path, capsys):
    """F68: the exact divergence draws no probes; --probes 3 was silently unused."""
    rc, err = run([*BASE["likelihood"], "--n", "8", "--probes", "3"], tmp_path, capsys)
    assert_one_error_line(rc, err, "likelihood", "probes=3 counts Hutchinson probes, but the divergence is 'exact'")
    assert "--divergence hutchinson" in err
    rc, err = run([*BASE["likelihood"], "--n", "8", "--probes", "2", "--divergence", "hutchinson"], tmp_path, capsys)
    assert rc == 0, err


# ---- destinations: checked before any work ---------------------------------------------------------------------
EMPTY_OUT = ("", "--out must be a non-empty string, got ''")  # D04, D14, D34: not the default, not the cwd
FOLDER_BAD = [("{tmp}/afile", "is a file"), ("{tmp}/afile/sub", "which is a file"),
              (str(UNWRITABLE), "cannot write there"), EMPTY_OUT]
FILE_BAD = [EMPTY_OUT, ("{tmp}", "is a folder"), ("{tmp}/missing/x", "does not exist"), ("{tmp}/afile/x", "is a file"),
            (str(UNWRITABLE) + ".json", "cannot write there")]
WORK = {"bench": ("diffsolve.bench.ranks", "run_sweep"), "sample": ("diffsolve.parallel_sample", "sample_batch"),
        "tune": ("diffsolve.tuning", "tune"), "train": ("diffsolve.training", "train")}
DESTINATIONS = [pytest.param(cmd, out, text, id=f"{cmd} {text}", marks=[needs_read_only] if "/sys" in out else [])
                for cmd, rows in (("bench", FOLDER_BAD), ("sample", FOLDER_BAD), ("tune", FILE_BAD),
                                  ("train", FILE_BAD)) for out, text in rows]


@pytest.mark.parametrize("cmd,out,text", DESTINATIONS)
def test_a_wrong_destination_is_refused_before_any_work(cmd, out, text, tmp_path, capsys, monkeypatch):
    import importlib

    module, name = WORK[cmd]

    def no_work(*a, **k):
        raise AssertionError("work started before the destination was checked")

    monkeypatch.setattr(importlib.import_module(module), name, no_work)
    argv = [*BASE[cmd][:-1], out] if BASE[cmd][-2] == "--out" else [*BASE[cmd], "--out", out]
    rc, err = run(argv, tmp_path, capsys)
    assert_one_error_line(rc, err, cmd, text)


def test_a_file_where_sample_keeps_its_batch_folder_is_one_error_with_the_fix(tmp_path, capsys):
    """R2-c51: a file named like the batch folder was 'File exists: …; check the path'."""
    out = tmp_path / "s"
    out.mkdir()
    (out / "batches").write_text("x")
    argv = [*BASE["sample"][:-1], str(out)] if BASE["sample"][-2] == "--out" else [*BASE["sample"], "--out", str(out)]
    rc, err = run(argv, tmp_path, capsys)
    assert_one_error_line(rc, err, "sample", f"{str(out / 'batches')!r} exists and is not a folder, but a folder is "
                                             f"needed there; move it away or choose another --out")


# ---- the user's files named by --problem ------------------------------------------------------------------------
GOOD = ("import diffsolve as ds\nfrom helper import Net\n\nmodel = ds.EpsModel(Net(), ds.VPLinear())\n")
HELPER = ("import torch\n\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
          "        self.lin = torch.nn.Linear(2, 2).double()\n\n    def forward(self, x, t):\n"
          "        return 0.1 * self.lin(x)\n")
FILES = {
    "raises at import": ("raise ValueError('at import')\n", "model", [], "ValueError: at import"),
    "syntax error": ("def f(:\n", "model", [], "SyntaxError"),
    "factory needs an argument": (GOOD + "\n\ndef make(n):\n    return model\n", "make", [],
                                  "missing 1 required positional argument"),
    "factory raises": (GOOD + "\n\ndef make():\n    raise RuntimeError('kaboom')\n", "make", [],
                       "RuntimeError: kaboom"),
    "no such attribute": (GOOD, "nope", [], "has no attribute 'nope'"),
    "shape the network does not take": (GOOD, "model", ["--shape", "1,2,4"], "(2, 1, 2, 4)"),
    "calls sys.exit at import (C090)": ("import sys\nsys.exit(0)\n", "model", [], "raised SystemExit (sys.exit(0))"),
}


def _user_file(tmp: Path, text: str) -> Path:
    (tmp / "helper.py").write_text(HELPER)
    path = tmp / f"user_{abs(hash(text)) % 10**8}.py"
    path.write_text(text)
    return path


@pytest.mark.parametrize("cmd", ["bench", "sample", "tune"])
@pytest.mark.parametrize("kind", list(FILES))
def test_a_bad_user_file_is_one_error_naming_it_and_its_exception(cmd, kind, tmp_path, capsys):
    text, attr, extra, expected = FILES[kind]
    if extra and cmd == "tune":
        pytest.skip("tune has no sweep to check the model before")
    path = _user_file(tmp_path, text)
    argv = [*BASE[cmd], "--problem", f"{path}:{attr}", *extra]
    rc, err = run(argv, tmp_path, capsys)
    assert_one_error_line(rc, err, cmd, expected)
    assert f"{path}:{attr}" in err and err.count(expected) == 1  # once, not once per cell
    assert not (tmp_path / "s" / "manifest.json").exists()  # sample: a wrong input never claims the folder


HUGE = ("import torch\nimport diffsolve as ds\n\n\nclass Net(torch.nn.Module):\n    def forward(self, x, t):\n"
        "        return torch.full_like(x, 1e307)\n\n\nmodel = ds.EpsModel(Net(), ds.VPLinear())\n")


def test_a_network_whose_outputs_explode_fails_its_cells_naming_the_reference_solve(tmp_path, capsys):
    """Outputs of 1e307 pass the first-call check (finite), then the adaptive reference solve's step falls to 0:
    each cell fails with one DiffsolveError naming the reference solve, the likely cause and the fix."""
    path = _user_file(tmp_path, HUGE)
    rc, err = run([*BASE["bench"], "--problem", f"{path}:model", "--shape", "2"], tmp_path, capsys)
    assert rc == 4 and "Traceback" not in err, err
    assert "reference solve of problem" in err and "step size fell to 0" in err, err
    assert "network's outputs are huge" in err and "--ref-tol" in err, err


def test_a_user_file_imports_modules_beside_it(tmp_path, capsys):
    path = _user_file(tmp_path, GOOD)
    rc, err = run([*BASE["bench"], "--problem", f"{path}:model", "--shape", "2"], tmp_path, capsys)
    assert rc == 0, err


# ---- results lines: generated from the store's schema ------------------------------------------------------------
BIG = "JSON number 1e999"
WRONG = {"a string": [1, None, ["x"]], "an integer >= 0": ["4", 4.5, True, -4], "a number": ["abc", True, [1.0]],
         "a number >= 0": ["abc", True, [1.0], -5.0], "an object": [[], "x"]}


def _line_rows() -> list:
    rows = []
    for field, (what, _) in store_mod.SCHEMA.items():
        for value in WRONG[what.split(" (")[0]]:
            if value is None and field in store_mod.NULLABLE:
                continue
            rows.append(pytest.param({field: value}, (), field, id=f"{field}={value!r}"))
    rows += [pytest.param({}, (field,), field, id=f"no {field}") for field in store_mod.CELL_FIELDS]
    rows += [pytest.param({"rmse": BIG}, (), "1e999", id="rmse=1e999"),
             pytest.param({"rmse": None}, (), "rmse null", id="rmse=null on an ok record"),  # E17: not finished
             pytest.param({"options": {"eta": BIG}}, (), "options.eta", id="options.eta=1e999")]
    return rows


def _good_lines(tmp: Path, capsys) -> list[str]:
    rc, err = run(BASE["bench"][:-1] + ["{tmp}/b"] + ["--nfe", "4,8"], tmp, capsys)
    assert rc == 0, err
    return (tmp / "b" / "results.jsonl").read_text().splitlines()


def _spoil(line: str, change: dict, drop: tuple) -> str:
    """The record on `line` with fields dropped and changed; BIG stands for the JSON number 1e999 (inf when read)."""
    rec = json.loads(line)
    for k in drop:
        rec.pop(k)
    return json.dumps({**rec, **change}).replace(f'"{BIG}"', "1e999")


@pytest.mark.parametrize("change,drop,named", _line_rows())
def test_a_bad_results_line_stops_the_sweep_naming_it_and_repair_sets_it_aside(change, drop, named, tmp_path,
                                                                             capsys):
    path = tmp_path / "results.jsonl"
    first, second = (json.dumps({**json.loads(GOOD_LINE), "seed": s, "key": f"k{s}"}) for s in (0, 1))
    path.write_text(f"{first}\n{_spoil(second, change, drop)}\n")
    with pytest.raises(store_mod.StoreError) as e:
        store_mod.ResultStore(path)
    assert "line 2" in str(e.value) and named in str(e.value) and "--repair" in str(e.value)
    assert list(store_mod.ResultStore(path, repair=True).records) == ["k0"]
    assert json.loads((tmp_path / "results.bad.jsonl").read_text())["line"] == 2


GOOD_LINE = json.dumps({"problem": "gmm-2d", "schedule": "linear", "solver": "euler", "grid": "logsnr",
                        "variable": "t", "kind": "ode", "nfe_target": 4, "seed": 0, "n": 8, "options": {"eta": 0.5},
                        "key": "k", "status": "ok", "nfe": 4, "rmse": 0.1, "error": None})


@pytest.mark.parametrize("change,drop", [({"rmse": "abc"}, ()), ({}, ("problem",)), ({"rmse": BIG}, ()),
                                         ({"rmse": -5.0}, ()), ({"nfe": -4}, ()), ({"rmse": None}, ())],
                         ids=["rmse='abc'", "no problem", "rmse=1e999", "rmse=-5", "nfe=-4 (E09)", "rmse=null (E17)"])
def test_the_cli_refuses_a_bad_line_then_repairs_it(change, drop, tmp_path, capsys):
    lines = _good_lines(tmp_path, capsys)
    path = tmp_path / "b" / "results.jsonl"
    path.write_text(f"{lines[0]}\n{_spoil(lines[1], change, drop)}\n")
    rc, err = run(BASE["bench"][:-1] + ["{tmp}/b", "--nfe", "4,8"], tmp_path, capsys)
    assert_one_error_line(rc, err, "bench", "line 2")
    assert "--repair" in err
    rc, err = run(BASE["bench"][:-1] + ["{tmp}/b", "--nfe", "4,8", "--repair"], tmp_path, capsys)
    assert rc == 0, err
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == [json.loads(x)["key"] for x in lines]
    (tmp_path / "b" / "results.bad.jsonl").unlink()
    path.write_text(f"{lines[0]}\n{_spoil(lines[1], change, drop)}\n")
    (tmp_path / "b" / "results.bad.jsonl").mkdir()
    rc, err = run(BASE["bench"][:-1] + ["{tmp}/b", "--nfe", "4,8", "--repair"], tmp_path, capsys)
    assert_one_error_line(rc, err, "bench", "is a folder")


# ---- suite files ---------------------------------------------------------------------------------------------------
SUITE = 'problem = "gmm-2d"\nn = 8\nnfe = [4]\nvariables = ["t"]\ngrids = ["logsnr"]\n[[run]]\nsolvers = ["euler"]\n'
SUITES_BAD = {  # what is wrong → (the file's bytes, the words of the one error line)
    "a name that climbs out of bench-results": (b'name = "../../evil"\n' + SUITE.encode(),
                                                "suite name '../../evil'"),
    "a name with a slash": (b'name = "a/b"\n' + SUITE.encode(), "no '/' or '..'"),
    "a name that is a number": (b'name = 3\n' + SUITE.encode(), "suite name 3"),
    "not UTF-8": (b'name = "caf\xe9"\n' + SUITE.encode(), "is not UTF-8 text"),
    "not TOML": (b"name = \n", "is not valid TOML"),
    # every setting has a kind and a range, checked before any cell runs (R2-c27, R2-c29, R2-c30, R2-c35)
    "fit_last a word": (b'fit_last = "three"\n' + SUITE.encode(),
                        "fit_last must be an integer >= 0 and <= 10000, got 'three'"),
    "fit_last 1": (b"fit_last = 1\n" + SUITE.encode(), "fit_last = 1 leaves one budget, which fits no order"),
    "fit_min_nfe a word": (b'fit_min_nfe = "x"\n' + SUITE.encode(),
                           "fit_min_nfe must be a finite number >= 1 and <= 1e+09, got 'x'"),
    "sw2_projections huge": (b"sw2_projections = 1000000000\n" + SUITE.encode(),
                             "sw2_projections must be an integer >= 1 and <= 10000, got 1000000000"),
    "repeats huge": (b"repeats = 1000000000\n" + SUITE.encode(),
                     "repeats must be an integer >= 1 and <= 1000, got 1000000000"),
    "description a number": (b"description = 5\n" + SUITE.encode(), "description must be a string, got 5"),
}


@pytest.mark.parametrize("kind", list(SUITES_BAD))
def test_a_bad_suite_file_is_one_error_line_and_nothing_is_written(kind, tmp_path, capsys, monkeypatch):
    raw, words = SUITES_BAD[kind]
    (tmp_path / "s.toml").write_bytes(raw)
    monkeypatch.chdir(tmp_path)
    rc, err = run(["bench", "--suite", str(tmp_path / "s.toml"), "--no-progress", "--no-report"], tmp_path, capsys)
    assert_one_error_line(rc, err, "bench", words)
    assert str(tmp_path / "s.toml") in err and not (tmp_path / "bench-results").exists()


def test_a_good_suite_file_writes_under_bench_results_by_its_name(tmp_path, capsys, monkeypatch):
    (tmp_path / "s.toml").write_text('name = "my suite-1"\n' + SUITE)
    monkeypatch.chdir(tmp_path)
    rc, err = run(["bench", "--suite", "s.toml", "--no-progress", "--no-report"], tmp_path, capsys)
    assert rc == 0 and (tmp_path / "bench-results" / "my suite-1" / "results.jsonl").exists(), err


# ---- files the commands read: sample manifests and checkpoints --------------------------------------------------
MANIFESTS = {"not JSON": "{bad", "a list": "[1, 2]", "empty": "", "binary": b"\xff\xfe\x00"}


@pytest.mark.parametrize("kind", list(MANIFESTS))
def test_a_damaged_manifest_is_one_error_with_the_fix(kind, tmp_path, capsys):
    (tmp_path / "s").mkdir()
    content = MANIFESTS[kind]
    target = tmp_path / "s" / "manifest.json"
    target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    rc, err = run(BASE["sample"], tmp_path, capsys)
    assert_one_error_line(rc, err, "sample", "manifest.json is damaged")
    assert "Delete the folder" in err


@pytest.mark.parametrize("change,words", [(lambda m: m.pop("problem"), "field(s) problem missing"),  # E42
                                          (lambda m: m.update(n="four"), "field(s) of the wrong type (n: 'four')")])
def test_a_manifest_with_a_field_missing_or_mistyped_is_damaged_not_another_jobs(change, words, tmp_path, capsys):
    rc, err = run(BASE["sample"], tmp_path, capsys)
    assert rc == 0, err
    path = tmp_path / "s" / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    rc, err = run(BASE["sample"], tmp_path, capsys)
    assert_one_error_line(rc, err, "sample", f"manifest.json is damaged ({words})")
    assert "another job" not in err


def _edit_batch(p: Path, **change) -> None:
    torch.save({**torch.load(p, weights_only=True), **change}, p)


def _nan_batch(p: Path) -> None:
    x = torch.load(p, weights_only=True)["x"].clone()
    x[0, 0] = float("nan")
    _edit_batch(p, x=x)


BATCHES = {  # what the first batch file becomes → the words of the one error line
    "text": (lambda p: p.write_text("junk\n"), "torch.load cannot read it"),
    "empty": (lambda p: p.write_bytes(b""), "torch.load cannot read it"),
    "a list": (lambda p: torch.save([1, 2], p), "it holds a list"),
    "another batch's samples": (lambda p: torch.save({"x": torch.zeros(3, 2), "first": 0, "nfe": 4}, p),
                                "it does not hold samples 0 … 1"),
    "samples of another shape": (lambda p: _edit_batch(p, x=torch.zeros(2, 3)),  # R2-c49: was torch.cat's error
                                 "its x is a torch.float32 tensor of shape (2, 3), not torch.float32 of shape (2, 2)"),
    "samples of another dtype": (lambda p: _edit_batch(p, x=torch.zeros(2, 2, dtype=torch.float64)),
                                 "its x is a torch.float64 tensor of shape (2, 2), not torch.float32"),
    "a NaN": (_nan_batch,  # R2-c52: was merged into samples.pt
              "its x holds 1 NaN or Inf value; sampling stores finite values only"),
}


@pytest.mark.parametrize("kind", list(BATCHES))
def test_a_damaged_batch_file_is_one_error_with_the_fix(kind, tmp_path, capsys):
    argv = [*BASE["sample"], "--batch", "2"]
    rc, err = run(argv, tmp_path, capsys)
    assert rc == 0, err
    first = sorted((tmp_path / "s" / "batches").iterdir())[0]
    change, words = BATCHES[kind]
    change(first)
    (tmp_path / "s" / "samples.pt").unlink()
    rc, err = run(argv, tmp_path, capsys)
    assert_one_error_line(rc, err, "sample", f"{first} is damaged")
    assert words in err
    assert "holds samples 0 … 1" in err and "Delete that file (a rerun samples it again)" in err
    first.unlink()
    rc, err = run(argv, tmp_path, capsys)  # the fix it names works
    assert rc == 0 and (tmp_path / "s" / "samples.pt").exists(), err


def _checkpoints(tmp: Path) -> dict[str, Path]:
    out = {"text": tmp / "text.pt", "empty": tmp / "empty.pt", "a list": tmp / "list.pt", "no weights": tmp / "d.pt"}
    out["text"].write_text("hello")
    out["empty"].write_bytes(b"")
    torch.save([1, 2], out["a list"])
    torch.save({"arch": "mlp"}, out["no weights"])
    return out


@pytest.mark.parametrize("cmd", ["likelihood", "bench"])
@pytest.mark.parametrize("kind", ["text", "empty", "a list", "no weights"])
def test_a_file_that_is_not_a_checkpoint_is_one_error(cmd, kind, tmp_path, capsys):
    path = _checkpoints(tmp_path)[kind]
    rc, err = run([*BASE[cmd], "--problem", str(path)], tmp_path, capsys)
    assert_one_error_line(rc, err, cmd, "not a checkpoint written by `diffsolve train`")


def _edited_toy(change) -> dict:
    from diffsolve import nets

    ckpt = torch.load(nets.checkpoint_path("toy-2d"), weights_only=True)
    change(ckpt)
    return ckpt


CHECKPOINTS_EDITED = {  # the shipped toy-2d checkpoint, edited → the words of the one error line
    "weights of another shape": (lambda c: c["state_dict"].update({"net.0.weight": torch.zeros(128, 1)}),
                                 "parameter 'net.0.weight' has shape (128, 1) in checkpoint"),
    "a weight missing": (lambda c: c["state_dict"].pop("net.6.bias"), "(missing: net.6.bias)"),
    "an unknown task": (lambda c: c.update(name="cifar-10"), "was trained on task 'cifar-10', which diffsolve does "
                                                              "not know"),
    "a schedule that cannot be built": (lambda c: c.update(schedule={"type": "Nope"}),
                                        "its schedule cannot be built (unknown schedule type 'Nope'"),
    "a config the architecture does not take": (lambda c: c["config"].update(bogus=1),
                                                "cannot be built from config"),
    "a negative size in the config": (lambda c: c["config"].update(hidden=-5),  # R2-c07: torch's RuntimeError
                                      "cannot be built from config {'dim': 2, 'hidden': -5, 'depth': 3, 'temb': 32} "
                                      "(hidden = -5 must be > 0)"),
    "an absurd size in the config": (lambda c: c["config"].update(hidden=10**9),  # built without memory first
                                     "parameter 'net.0.weight' has shape (128, 34) in checkpoint"),
    "an unknown architecture": (lambda c: c.update(arch="nope"), "unknown architecture 'nope'; valid ones are mlp"),
    "an unknown prediction": (lambda c: c.update(prediction="nope"),  # R2-c11, R2-c16: the file is named
                              "its prediction 'nope' is not one diffsolve knows (valid ones are eps, x0, v"),
}


@pytest.mark.parametrize("cmd", ["likelihood", "bench"])
@pytest.mark.parametrize("kind", list(CHECKPOINTS_EDITED))
def test_an_edited_checkpoint_is_one_error_naming_the_file_and_what_does_not_fit(cmd, kind, tmp_path, capsys):
    change, words = CHECKPOINTS_EDITED[kind]
    path = tmp_path / "edited.pt"
    torch.save(_edited_toy(change), path)
    rc, err = run([*BASE[cmd], "--problem", str(path)], tmp_path, capsys)
    assert_one_error_line(rc, err, cmd, words)
    assert f"checkpoint {str(path)!r}" in err and "diffsolve train" in err
    if kind == "weights of another shape":
        assert "but (128, 34) in its network" in err


def test_sample_on_a_device_this_machine_lacks_is_refused_before_the_manifest(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rc, err = run([*BASE["sample"], "--device", "cuda"], tmp_path, capsys)
    assert_one_error_line(rc, err, "sample", "--device 'cuda' is not available")
    assert not (tmp_path / "s").exists()
    for argv in (["--solver", "bogus"], ["--nfe", "1", "--solver", "heun"], ["--grid", "karras:rho=x"]):
        rc, err = run([*BASE["sample"], *argv], tmp_path, capsys)
        assert rc == 2 and not (tmp_path / "s").exists(), err
    rc, err = run(BASE["sample"], tmp_path, capsys)  # the corrected command into the same folder
    assert rc == 0 and (tmp_path / "s" / "samples.pt").exists(), err


@pytest.mark.parametrize("cmd", ["sample", "tune"])
@pytest.mark.parametrize("device,words", [("cuda:7", "is not available on this machine"),
                                          ("foo", "is not a torch device; give e.g. cpu or cuda:0")])
def test_a_device_this_machine_lacks_is_one_error_before_any_work(cmd, device, words, tmp_path, capsys,
                                                                  monkeypatch):
    """sample and tune share one device check (diffsolve.devices.check_device)."""
    import importlib

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    module, name = WORK[cmd]
    monkeypatch.setattr(importlib.import_module(module), name, lambda *a, **k: pytest.fail("work started"))
    rc, err = run([*BASE[cmd], "--device", device], tmp_path, capsys)
    assert_one_error_line(rc, err, cmd, f"--device {device!r} {words}")


# ---- hypothesis: the command line's argument space ---------------------------------------------------------------
TOKENS = {
    "bench": {"--problem": ["gmm-2d", "gmm-3d", "x.py:model", "gmm-2d,gmm-2d"],
              "--solver": ["euler", "heun", "ddim:eta=0.5", "euler_maruyama", "hewn", "ipndm:order=9", "rk4",
                           "dopri5", "ddim:eta"],
              "--grid": ["logsnr", "time", "karras:rho=7", "karras:rho=inf", "custom:1.0,0.5,0.001", "bogus", "tuned"],
              "--variable": ["t", "sigma", "lambda", "t,x"], "--nfe": ["2", "4", "0", "-1", "abc", "3,4"],
              "--n": ["8", "1", "abc"], "--seeds": ["0", "-1", "a", "0,1"], "--dtype": ["float32", "float64"],
              "--format": ["md", "csv", "json"], "--shape": ["2", "0", "x"], "--tols": ["1e-3", "nan", "2"],
              "--threads": ["1", "0"], "--schedule": ["linear", "cosine", "nope"], "--ref-tol": ["1e-8", "0"],
              "--suite": ["nope"], "--repeats": ["1", "0"]},
    "tune": {"--solver": ["ipndm", "euler", "ipndm:order=3", "bogus", "ddpm", "dopri5"],
             "--nfe": ["4", "1", "0", "x"], "--n": ["8", "0"], "--candidates": ["8", "1"], "--max-evals": ["4", "0"],
             "--train-seeds": ["0", "", "a", "-1"], "--heldout-seeds": ["1", ""], "--method": ["dp", "refine", "no"],
             "--variable": ["t", "x"], "--teacher-tol": ["1e-6", "nan"], "--out": ["{tmp}/g.json", "{tmp}"]},
    "sample": {"--solver": ["euler", "ddpm", "bogus", "heun", "ddim:eta=2"], "--nfe": ["4", "1", "0"],
               "--n": ["4", "0"], "--batch": ["2", "0"], "--seed": ["0", "-1", "1073741823"],
               "--device": ["cpu", "cuda", "gpu7"], "--grid": ["logsnr", "karras:rho=0", "nope"],
               "--shape": ["2", "1,2"], "--dtype": ["float32", "float64"]},
}


@st.composite
def command_lines(draw, cmd: str):
    flags = draw(st.lists(st.sampled_from(sorted(TOKENS[cmd])), max_size=4, unique=True))
    return [*BASE[cmd], *[a for f in flags for a in (f, draw(st.sampled_from(TOKENS[cmd][f])))]]


@pytest.mark.parametrize("cmd,examples", [("bench", 10), ("tune", 6), ("sample", 8)])
def test_the_argument_space_never_ends_in_a_traceback(cmd, examples, tmp_path_factory, capsys):
    @settings(max_examples=examples, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(command_lines(cmd))
    def check(argv):
        tmp = tmp_path_factory.mktemp(cmd)
        rc, err = run(argv, tmp, capsys)
        assert rc in (0, 2, 3, 4) and "Traceback" not in err, (argv, rc, err)
        if rc == 2:
            assert sum(line.startswith(f"diffsolve {cmd}: error: ") for line in err.splitlines()) == 1, err

    check()


# ---- fuzzed JSON: the results-line reader and the grid-file reader -------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8)


@st.composite
def record_lines(draw) -> bytes:
    """A valid record with some fields replaced, dropped or added, or any JSON at all, or bytes."""
    kind = draw(st.sampled_from(["mutated", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    rec = json.loads(GOOD_LINE)
    for key in draw(st.lists(st.sampled_from(sorted(rec) + ["extra", "rmse", "sw2"]), max_size=3)):
        if draw(st.booleans()):
            rec.pop(key, None)
        else:
            rec[key] = draw(JSON)
    text = json.dumps(rec, allow_nan=True)
    return (text.replace("Infinity", "1e999") if draw(st.booleans()) else text).encode()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(record_lines())
def test_a_results_line_is_a_record_the_report_can_use_or_a_reason(raw):
    got = store_mod.check_line(raw)
    assert isinstance(got, (dict, str))
    if isinstance(got, dict):  # accepted: the report must work with it
        report_markdown([got]), report_csv([got])


@st.composite
def grid_files(draw) -> bytes:
    data = {"times": [1.0, 0.5, 0.001], "schedule": {"kind": "linear", "beta_min": 0.1, "beta_max": 20.0,
                                                     "t_min": 1e-3, "t_max": 1.0}}
    kind = draw(st.sampled_from(["mutated", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    for key in draw(st.lists(st.sampled_from(["times", "schedule", "eval_times", "fingerprint"]), min_size=1,
                             max_size=2)):
        data[key] = draw(JSON | st.lists(JSON, max_size=4))
    return json.dumps(data).encode()


@settings(max_examples=200, deadline=None, derandomize=True)
@given(raw=grid_files())
def test_a_grid_file_loads_or_raises_a_grid_error(raw, tmp_path_factory):
    import diffsolve as ds

    path = tmp_path_factory.mktemp("grid") / "g.json"
    path.write_bytes(raw)
    try:
        data = grids.read_file(path)
        grids.load_file(path, ds.VPLinear())
    except DiffsolveError:
        return
    assert all(type(t) in (int, float) for t in data["times"])


def test_a_grid_file_with_a_bool_time_is_refused(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"times": [True, 0.5, 0.001], "schedule": {"kind": "linear"}}))
    with pytest.raises(DiffsolveError, match="a list of numbers"):
        grids.read_file(path)
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(DiffsolveError, match="not valid JSON"):
        grids.read_file(path)


# ---- learned solver files named by --solver file:PATH -----------------------------------------------------------
def _learned_data() -> dict:
    """A valid learned solver file's JSON object (iPNDM on gmm-2d's logsnr grid of 4 steps, Δ = 0)."""
    import diffsolve as ds
    from diffsolve.solvers.exp.learned import LearnedMultistep, plan_sizes
    from diffsolve.solvers.learned import LearnedSolver

    prob = ds.problems.get("gmm-2d")
    grid = ds.grids.logsnr(prob.default_schedule(), 4)
    deltas = [[0.0] * k for k in plan_sizes(LearnedMultistep("ipndm").plan_on(grid))]
    return LearnedSolver(LearnedMultistep("ipndm", {}, deltas), grid, 4, "sigma", prob.fingerprint(),
                         problem="gmm-2d").file_data()


LEARNED_BAD = {  # what is wrong → (the file's text or a change to its fields, the words the one error line holds)
    "nfe a word": ({"nfe": "four"}, "nfe must be an integer >= 1, got 'four'"),
    "a NaN weight": ({"weights": "NAN"}, "weights.deltas[0][0] must be a finite number >= -1000 and <= 1000, got nan"),
    "weights a word": ({"weights": {"deltas": "zero"}}, "weights.deltas must be a list of lists"),
    "no weights": ({"weights": None}, "has no 'weights'"),
    "a future version": ({"version": 9}, "upgrade diffsolve"),
    "steps that its times contradict": ({"steps": 7}, "steps is 7, but its times and options make 4"),
    "problem a number": ({"problem": 3}, "problem must be a string"),
    "broken JSON": ("{\"kind\": \"learned\",", "is not valid JSON in UTF-8 (JSONDecodeError"),
    "not UTF-8": (b"{\"kind\": \"learn\xffed\"}", "is not valid JSON in UTF-8 (UnicodeDecodeError"),
}


def _without(argv: list[str], flag: str) -> list[str]:
    """argv without `flag` and its value."""
    i = argv.index(flag)
    return argv[:i] + argv[i + 2:]


def _learned_file(tmp: Path, change) -> Path:
    path = tmp / "learned.json"
    if isinstance(change, (str, bytes)):
        path.write_bytes(change.encode() if isinstance(change, str) else change)
        return path
    data = {**_learned_data(), **change}
    if change.get("weights") == "NAN":
        data["weights"] = {**_learned_data()["weights"], "deltas": [[float("nan")], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]}
    if change.get("weights", 0) is None:
        data.pop("weights")
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("cmd", ["bench", "sample"])
@pytest.mark.parametrize("kind", list(LEARNED_BAD))
def test_a_damaged_learned_file_is_one_error_naming_the_file_the_field_and_the_fix(cmd, kind, tmp_path, capsys):
    change, words = LEARNED_BAD[kind]
    path = _learned_file(tmp_path, change)
    rc, err = run(_without(BASE[cmd], "--nfe") + ["--solver", f"file:{path}"], tmp_path, capsys)
    assert_one_error_line(rc, err, cmd, words)
    assert f"learned solver file {str(path)!r}" in err and "ds.solvers.learn(…).save(path)" in err
    assert "grid file" not in err and "grids.save" not in err


def test_a_valid_learned_file_runs_in_the_bench(tmp_path, capsys):
    path = _learned_file(tmp_path, {})
    rc, err = run(_without(BASE["bench"], "--nfe") + ["--solver", f"file:{path}"], tmp_path, capsys)
    assert rc == 0, err
    rc, err = run(_without(BASE["bench"], "--nfe") + ["--solver", f"file:{path}", "--nfe", "4", "--fresh"], tmp_path,
                  capsys)
    assert rc == 0, err


def test_a_learned_file_with_an_nfe_list_it_does_not_cost_is_refused(tmp_path, capsys):
    """It runs at its own NFE (4): an --nfe list without it is refused, as ds.sample refuses nfe=8 (R2-c02)."""
    path = _learned_file(tmp_path, {})
    rc, err = run(_without(BASE["bench"], "--nfe") + ["--solver", f"file:{path},euler", "--nfe", "8"], tmp_path,
                  capsys)
    assert_one_error_line(rc, err, "bench", f"'file:{path}' was learned for nfe=4, which is not in the NFE list [8]; "
                                            f"add 4 to the list (--nfe, or nfe in the suite), or run it in a sweep of "
                                            f"its own without --nfe")
    assert not (tmp_path / "b" / "results.jsonl").exists()


def test_a_reference_solve_whose_step_falls_to_zero_is_one_error_naming_it():
    """torchdiffeq's 'underflow in dt' assertion (a stiff ODE, finite throughout) becomes a DiffsolveError naming the
    reference solve, its tolerance and the fix (--ref-tol); other assertion errors pass through."""
    from diffsolve.bench import expand_run
    from diffsolve.bench.inputs import _reference

    cell = expand_run({"problems": ["gmm-2d"], "solvers": ["euler"], "grids": ["logsnr"], "variables": ["t"],
                       "nfe": [4]})[0]

    def underflow():
        raise AssertionError("underflow in dt 0.0")

    with pytest.raises(DiffsolveError, match=r"reference solve of problem 'gmm-2d'.*step size fell to 0.*--ref-tol"):
        _reference(cell, 1e-10, underflow)

    def other():
        raise AssertionError("something else")

    with pytest.raises(AssertionError, match="something else"):
        _reference(cell, 1e-10, other)


# ---- the re-audit's cases (/work/audit2, its ids) --------------------------------------------------------------
def test_an_empty_export_list_is_refused_before_tuning(tmp_path, capsys):
    """N031: --export '' (an unset shell variable) exported nothing and said nothing."""
    rc, err = run([*BASE["tune"], "--export", ""], tmp_path, capsys)
    assert_one_error_line(rc, err, "tune", "--export '' has an empty value")
    assert not (tmp_path / "g.json").exists()


def test_merging_a_sweep_with_missing_cells_says_so(tmp_path, capsys):
    """N088/N089: --merge after one shard of two (or with other flags than the sweep's) reported part of the sweep as
    if it were all of it; now one warning line names how many cells are missing and what to do."""
    sweep = [*_without(BASE["bench"], "--out"), "--solver", "euler,heun"]
    rc, err = run([*sweep, "--shard", "0/2", "--out", "{tmp}/m"], tmp_path, capsys)
    assert rc == 0, err
    rc, err = run([*sweep, "--merge", "{tmp}/m"], tmp_path, capsys)
    warning = [line for line in err.splitlines() if "warning" in line]
    assert rc == 0 and len(warning) == 1 and "1 of the sweep's 2 cells are not in" in warning[0], err
    rc, err = run([*sweep, "--shard", "1/2", "--out", "{tmp}/m"], tmp_path, capsys)
    rc, err = run([*sweep, "--merge", "{tmp}/m"], tmp_path, capsys)
    assert rc == 0 and "warning" not in err, err


def test_a_foreign_pickle_is_one_error_line_without_torchs_warning(tmp_path, capsys):
    """C106: a pickle that is not a checkpoint was refused (its code not run), after torch's multi-line warning."""
    import pickle

    bad = tmp_path / "c.pt"
    bad.write_bytes(pickle.dumps({"state_dict": object}, protocol=4))
    rc, err = run([*_without(BASE["bench"], "--problem"), "--problem", str(bad)], tmp_path, capsys)
    assert_one_error_line(rc, err, "bench", "is not a checkpoint written by `diffsolve train`")
    assert "UserWarning" not in err, err


def test_write_exports_takes_a_grid_file(tmp_path):
    """N130/N131: write_exports('file:tuned.json', …) was refused as 'not a learned solver's file'."""
    import diffsolve as ds
    from diffsolve.export import write_exports

    grid = ds.grids.make("karras", ds.VPLinear(), 6)
    ds.grids.save(grid, tmp_path / "g.json")
    paths = write_exports(f"file:{tmp_path / 'g.json'}", tmp_path / "out" / "g", ["sigmas"])
    sig = json.loads(paths[0].read_text())["sigmas"]
    assert torch.allclose(torch.tensor(sig[:-1] if sig[-1] == 0 else sig, dtype=torch.float64),
                          ds.export.sigmas(grid, ds.VPLinear(), end="sigma_min"))
