"""First-day frictions, each fixed with a test: the store reads the new fields and old files; stored results from before
fingerprints are adopted (checked) instead of recomputed; references are solved before the cell bar starts (an honest
ETA); --data/--features on the command line; messages name only arguments that exist."""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path

import pytest
import torch

import diffsolve as ds
from diffsolve.bench import Suite, run_sweep
from diffsolve.bench import sweep as sweep_mod
from diffsolve.bench.inputs import Inputs
from diffsolve.bench.migrate import legacy_key, migrate
from diffsolve.bench.store import MemoryStore, ResultStore, check_line
from diffsolve.cli import bench as cli_bench
from diffsolve.cli import build_parser, main
from diffsolve.errors import DiffsolveError

ROOT = Path(__file__).resolve().parent.parent


SMALL = {"problems": ["gmm-2d"], "n": 16, "solvers": ["euler", "dpmpp2m"], "grids": ["logsnr"],
         "variables": ["sigma"], "nfe": [4, 8], "ref_tol": 1e-6}  # a loose reference: fast, and enough here


def line(**fields) -> bytes:
    base = {"key": "k", "status": "ok", "nfe": 4, "problem": "p", "schedule": "linear", "solver": "euler",
            "grid": "logsnr", "variable": "t", "kind": "ode", "nfe_target": 4, "seed": 0, "n": 8}
    return json.dumps({**base, **fields}).encode()


def test_the_store_checks_the_new_fields_and_reads_every_committed_file():
    good = line(err_median=0.1, err_p90=0.2, flips=3, data="data:ab", features="", data_n=8, data_sw2=0.1,
                data_sw2_floor=0.05, data_mmd2=-1e-3, data_mmd2_floor=1e-3, data_fd=None, data_fd_floor=None)
    assert isinstance(check_line(good), dict)
    assert isinstance(check_line(line()), dict)  # a record stored before these fields existed
    for bad, field in ((line(flips="3"), "flips"), (line(flips=2.5), "flips"), (line(err_median="x"), "err_median"),
                       (line(data=5), "data"), (line(data_n=True), "data_n"), (line(data_sw2="0.1"), "data_sw2")):
        assert field in check_line(bad)
    for path in sorted((ROOT / "benchmarks" / "results").glob("*/results.jsonl")):
        store = ResultStore(path)
        assert len(store.records) == len(path.read_text().splitlines()) > 0


def _legacy_copy(src: Path, dst: Path, cells) -> None:
    """src's records as a store written before cells carried fingerprints would hold them."""
    by_key = {c.key: c for c in cells}
    lines = []
    for raw in src.read_text().splitlines():
        rec = json.loads(raw)
        rec["key"] = legacy_key(by_key[rec["key"]])
        rec.pop("fingerprint")
        lines.append(json.dumps(rec))
    dst.mkdir()
    (dst / "results.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def fresh_store(tmp_path_factory) -> Path:
    """SMALL's cells swept once into a store (its folder)."""
    folder = tmp_path_factory.mktemp("fresh")
    run_sweep(Suite.from_dict(SMALL, name="t").cells, folder / "results.jsonl", progress=False)
    return folder


def test_records_from_before_fingerprints_are_adopted_after_a_check_and_a_rerun_computes_nothing(tmp_path,
                                                                                                  fresh_store):
    suite = Suite.from_dict(SMALL, name="t")
    assert all(c.fingerprint for c in suite.cells)
    (tmp_path / "new").symlink_to(fresh_store)
    _legacy_copy(tmp_path / "new" / "results.jsonl", tmp_path / "old", suite.cells)
    assert not any(c.key in ResultStore(tmp_path / "old" / "results.jsonl") for c in suite.cells)  # not found: why
    said: list[str] = []
    assert migrate(suite.cells, tmp_path / "old", log=said.append) == len(suite.cells)
    assert said and "reproduces" in said[0]
    old, new = ResultStore(tmp_path / "old" / "results.jsonl"), ResultStore(tmp_path / "new" / "results.jsonl")
    assert old.records == new.records  # keys, fingerprints and numbers: as a fresh run stores them
    ran: list[bool] = []
    run_sweep(suite.cells, tmp_path / "old" / "results.jsonl", progress=False, on_record=lambda r, f: ran.append(f))
    assert ran == [False] * len(suite.cells)
    assert len((tmp_path / "old" / "results.jsonl").read_text().splitlines()) == len(suite.cells)
    assert migrate(suite.cells, tmp_path / "old") == 0  # idempotent


def test_records_that_do_not_reproduce_are_refused_and_left_as_they_are(tmp_path, fresh_store):
    suite = Suite.from_dict(SMALL, name="t")
    _legacy_copy(fresh_store / "results.jsonl", tmp_path / "old", suite.cells)
    path = tmp_path / "old" / "results.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    for r in recs:  # another problem: every stored error doubled
        r["rmse"] *= 2
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    before = path.read_bytes()
    with pytest.raises(DiffsolveError, match="do not reproduce.*rmse stored.*--fresh"):
        migrate(suite.cells, tmp_path / "old")
    assert path.read_bytes() == before


def test_the_cli_migrates_with_a_flag_and_says_so_without_it(tmp_path, capsys):
    args = ["bench", "--problem", "gmm-2d", "--solver", "euler,dpmpp2m", "--variable", "sigma", "--nfe", "4,8",
            "--n", "16", "--ref-tol", "1e-6", "--no-progress", "--no-report"]
    assert main([*args, "--out", str(tmp_path / "new")]) == 0
    suite = cli_bench.suite_of(build_parser().parse_args([*args, "--out", "x"]))
    _legacy_copy(tmp_path / "new" / "results.jsonl", tmp_path / "old", suite.cells)
    (tmp_path / "old2").mkdir()
    (tmp_path / "old2" / "results.jsonl").write_bytes((tmp_path / "old" / "results.jsonl").read_bytes())
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "old"), "--migrate"]) == 0
    assert "migrated 4 stored records" in capsys.readouterr().err
    assert len((tmp_path / "old" / "results.jsonl").read_text().splitlines()) == 4
    assert main([*args, "--out", str(tmp_path / "old2")]) == 0  # without the flag: computed again, and said
    assert "rerun with --migrate" in capsys.readouterr().err


def test_references_are_solved_before_the_first_cell_so_the_cell_bar_times_cells(monkeypatch):
    """The cell bar's rate (and ETA) once included a two-minute reference inside the first cell: 1:07:59 shown."""
    cells = Suite.from_dict({**SMALL, "seeds": [0, 1], "nfe": [4]}, name="t").cells
    inputs = Inputs()
    seen: list[int] = []
    real = sweep_mod.run_cell

    def spy(cell, inp):
        seen.append(len(inp.references))
        return real(cell, inp)

    monkeypatch.setattr(sweep_mod, "run_cell", spy)
    run_sweep(cells, MemoryStore(), progress=False, inputs=inputs)
    assert seen == [2] * len(cells)  # both seeds' references exist before the first cell runs, each solved once
    assert [(r["seed"], r["n"]) for r in inputs.references] == [(0, 16), (1, 16)]


def test_data_and_features_flags_reach_the_cells_and_the_report(tmp_path, capsys):
    data = ds.problems.resolve("gmm-2d").samples(64, 5, ds.VPLinear(), 1e-3, stream=9)
    torch.save(data, tmp_path / "real.pt")
    (tmp_path / "feats.py").write_text("import torch\ndef square(x):\n    return torch.cat([x, x ** 2], 1)\n")
    args = ["bench", "--problem", "gmm-2d", "--solver", "dpmpp2m", "--nfe", "4", "--n", "16", "--ref-tol", "1e-6",
            "--no-progress",
            "--data", str(tmp_path / "real.pt"), "--features", f"{tmp_path / 'feats.py'}:square",
            "--features-fingerprint", "square-v1", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "### Quality against the data" in out and "**data_fd" in out and "floor" in out
    (rec,) = [json.loads(x) for x in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert rec["data"].startswith("data:") and rec["features"] and rec["data_fd"] is not None
    assert rec["data_sw2_floor"] > 0 and rec["data_n"] == 16
    assert main(args[:-8] + ["--features", f"{tmp_path / 'feats.py'}:square", "--out", str(tmp_path / "p")]) == 2
    assert "--data FILE" in capsys.readouterr().err  # features without data: the message names the flag


def test_the_unhashable_model_warning_names_only_arguments_that_exist():
    model = ds.EpsModel(lambda x, t: 0.1 * x, ds.VPLinear())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds.problems.UserProblem(model, shape=(2,)).fingerprint()
    (w,) = [w for w in caught if "fingerprint" in str(w.message)]
    msg = str(w.message)
    assert "ds.bench.run" in msg and "UserProblem" in msg and "--fingerprint" in msg and "grids.tune" not in msg
    assert "fingerprint" in inspect.signature(ds.bench.run).parameters
    assert "fingerprint" in inspect.signature(ds.problems.UserProblem).parameters
    assert build_parser().parse_args(["bench", "--fingerprint", "v1"]).fingerprint == "v1"
