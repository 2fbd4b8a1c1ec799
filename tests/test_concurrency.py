"""Two processes writing one OUT folder at once: no duplicated, lost or broken lines; references solved once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffsolve.bench import Inputs, ResultStore, expand_run, run_cell, run_sweep

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
BENCH = ["bench", "--problem", "gmm-2d", "--solver", "euler,heun,dpmpp2m", "--variable", "t,sigma",
         "--nfe", "4,8,16,32", "--n", "8", "--no-progress", "--no-report"]
CELLS = (2 * 2 + 1) * 4  # euler, heun in t and σ̄; dpmpp2m only in λ (its own variable)
RUN = {"problem": "gmm-2d", "n": 8, "solvers": ["euler", "heun", "dpmpp2m"], "grids": ["logsnr"],
       "variables": ["t", "sigma"], "nfe": [4, 8, 16, 32]}
MEASURED = ("nfe", "steps", "rmse", "rel_err", "max_err", "ref_err", "sw2", "sw2_floor", "status")


def _start(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "diffsolve.cli", *BENCH, "--out", str(out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _lines(out: Path) -> list[dict]:
    raw = (out / "results.jsonl").read_text().splitlines()
    return [json.loads(x, parse_constant=lambda c: pytest.fail(f"{c} in results.jsonl")) for x in raw]


def _values(records: list[dict]) -> dict[str, tuple]:
    return {r["key"]: tuple(r[k] for k in MEASURED) for r in records}


@pytest.mark.slow  # two real processes (~2 s); the claim/lock logic is tested in-process below
def test_two_processes_running_one_sweep_into_one_folder_store_every_cell_once(tmp_path):
    """Both run at once; the store holds each cell exactly once, values equal to a single process's run."""
    shared = tmp_path / "shared"
    procs = [_start(shared), _start(shared)]
    alone = run_sweep(expand_run(RUN), tmp_path / "alone.jsonl", progress=False)  # meanwhile, in this process
    errs = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    records = _lines(shared)
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == len(alone) == CELLS  # no duplicate, no lost cell, every line valid JSON
    assert len(list((shared / "cache").glob("reference-*.pt"))) == 1
    assert _values(records) == _values(alone)


REF_SCRIPT = """
import sys, json
from diffsolve.bench import Inputs, expand_run
cells = expand_run({"problem": "gmm-2d", "n": 8, "solvers": ["euler"], "grids": ["logsnr"], "variables": ["t"],
                    "nfe": [4], "seeds": list(range(6)), "ref_tol": 1e-6})
inputs, solved = Inputs(cache_dir=sys.argv[1]), []
for cell in cells:
    before = inputs.reference_seconds
    inputs.reference(cell)
    if inputs.reference_seconds > before:
        solved.append(cell.seed)
print(json.dumps(solved))
"""


@pytest.mark.slow  # two real processes (~2 s); the claim/lock logic is tested in-process below
def test_two_processes_share_the_reference_cache_without_races_or_double_solves(tmp_path):
    """Six references, two processes: no error, each reference solved by exactly one of them."""
    procs = [subprocess.Popen([sys.executable, "-c", REF_SCRIPT, str(tmp_path)], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.decode() for _, e in outs]
    a, b = (json.loads(o) for o, _ in outs)
    assert sorted(a + b) == list(range(6))  # each solved once, by one process; the other read it
    assert len(list(tmp_path.glob("reference-*.pt"))) == 6 and not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow  # run by `python -m pytest -m slow` (CI runs both)
def test_sigterm_mid_sweep_stores_finished_cells_writes_the_report_and_exits_143(tmp_path):
    """SIGTERM after ≥ 2 stored cells: exit 143, a message with the count, a report of exactly those cells."""
    import signal
    import time

    args = [sys.executable, "-m", "diffsolve.cli", "bench", "--problem", "gmm-2d", "--solver", "euler,heun",
            "--variable", "t,sigma,lambda", "--nfe", "50,100,200,400,800", "--n", "64", "--no-progress",
            "--out", str(tmp_path)]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stored = 0
    for _ in range(4800):  # up to 240 s for two cells to be stored
        if stored >= 2:
            break
        time.sleep(0.05)
        path = tmp_path / "results.jsonl"
        stored = len(path.read_bytes().splitlines()) if path.exists() else 0
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 143, err
    keys = [r["key"] for r in _lines(tmp_path)]
    assert 2 <= len(keys) < 30 and len(set(keys)) == len(keys)
    assert f"terminated (SIGTERM): {len(keys)} of 30 cells are stored" in err and "Traceback" not in err, err
    assert len((tmp_path / "results.csv").read_text().splitlines()) == len(keys) + 1
    again = subprocess.run(args + ["--no-report"], env=ENV, capture_output=True)
    assert again.returncode == 0
    final = [r["key"] for r in _lines(tmp_path)]
    assert final[: len(keys)] == keys and len(set(final)) == len(final) == 30


def test_ctrl_c_anywhere_in_a_command_is_one_line_and_status_130(monkeypatch, capsys):
    from diffsolve import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "bench", (cli.COMMANDS["bench"][0], interrupted))
    assert cli.main(["bench"]) == 130
    assert capsys.readouterr().err == "diffsolve bench: interrupted\n"

    def parser_interrupted():
        raise KeyboardInterrupt  # e.g. while a subcommand's parser imports its module

    monkeypatch.setattr(cli, "build_parser", parser_interrupted)
    assert cli.main(["bench"]) == 130
    assert capsys.readouterr().err == "diffsolve bench: interrupted\n"  # the command is named from argv


def test_a_claim_is_exclusive_and_its_file_goes_only_when_the_work_is_done(tmp_path):
    from diffsolve.locking import claim, locked

    with claim(tmp_path, "cell") as mine:
        with claim(tmp_path, "cell") as again, claim(tmp_path, "other") as other:
            assert mine and not again and other  # flock is per open file: exclusive even within a process
    assert list(tmp_path.iterdir()) == []  # finished normally: the claim files are gone
    with pytest.raises(KeyboardInterrupt), claim(tmp_path, "cell"):
        raise KeyboardInterrupt
    assert len(list(tmp_path.iterdir())) == 1  # abandoned: the file stays, so waiters share one lock
    with locked(tmp_path / "x.lock") as held, locked(tmp_path / "x.lock", blocking=False) as second:
        assert held and not second


def test_without_working_file_locks_the_store_warns_once_and_goes_on(tmp_path, monkeypatch):
    import errno

    from diffsolve import locking

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locking.fcntl, "flock", no_locks)
    monkeypatch.setattr(locking, "_warned", [])
    with pytest.warns(RuntimeWarning, match="one process per output folder"):
        store = ResultStore(tmp_path / "results.jsonl")
    cell = expand_run(RUN)[0]
    store.append(run_cell(cell, Inputs()))
    assert ResultStore(tmp_path / "results.jsonl").get(cell.key)["nfe"] == 4
