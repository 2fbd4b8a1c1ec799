"""The result store: JSON-safe records, bad lines named and set aside, shards merged by key."""

from __future__ import annotations

import json
import math

import pytest

from diffsolve.bench import Cell, ResultStore, register_kind, run_sweep
from diffsolve.bench.cells import CELL_KINDS
from diffsolve.bench.store import StoreError, check_line, json_safe

NAN_KIND = "test-nonfinite"


def _nonfinite_cell(cell, inputs):
    """A cell kind whose measurements are the cell's seed-th non-finite value (no solve)."""
    return {"nfe": 3, "steps": 3, "rmse": [math.nan, math.inf, -math.inf, 0.5][cell.seed], "sw2": 0.25}


if NAN_KIND not in CELL_KINDS:
    register_kind(NAN_KIND, _nonfinite_cell)


def _cells(seeds=(0, 1, 2, 3)):
    return [Cell("gmm-2d", "linear", "euler", "logsnr", "t", 4, s, 8, kind=NAN_KIND) for s in seeds]


def test_nonfinite_measurements_are_stored_as_null_with_a_reason_and_do_not_abort_the_sweep(tmp_path):
    path = tmp_path / "results.jsonl"
    records = run_sweep(_cells(), path, progress=False)
    assert [r["status"] for r in records] == ["failed", "failed", "failed", "ok"]
    assert [r["rmse"] for r in records] == [None, None, None, 0.5]
    assert [r.get("nonfinite") for r in records[:3]] == [{"rmse": "nan"}, {"rmse": "inf"}, {"rmse": "-inf"}]
    assert "rmse=nan" in records[0]["error"] and records[0]["sw2"] == 0.25
    lines = path.read_text().splitlines()
    assert [json.loads(line, parse_constant=lambda c: pytest.fail(c)) for line in lines] == records
    # a record with non-finite values is finished: a rerun computes nothing
    again: list[bool] = []
    run_sweep(_cells(), path, progress=False, on_record=lambda r, fresh: again.append(fresh))
    assert again == [False] * 4 and len(path.read_text().splitlines()) == 4


def test_json_safe_nulls_nonfinite_values_anywhere_and_keeps_an_existing_error():
    rec = {"key": "k", "status": "failed", "error": "SolverError: bad eta", "options": {"eta": math.nan},
           "tol": math.inf, "list": [1.0, -math.inf]}
    out = json_safe(rec)
    assert out["options"] == {"eta": None} and out["tol"] is None and out["list"] == [1.0, None]
    assert out["nonfinite"] == {"options.eta": "nan", "tol": "inf", "list[1]": "-inf"}
    assert out["error"] == "SolverError: bad eta" and rec["options"]["eta"] != rec["options"]["eta"]  # input kept
    assert json_safe({"key": "k", "status": "ok", "nfe": 1}) == {"key": "k", "status": "ok", "nfe": 1}


PARAMS = {"problem": "gmm-2d", "schedule": "linear", "solver": "euler", "grid": "logsnr", "variable": "t",
          "kind": "ode", "nfe_target": 4, "seed": 0, "n": 8}
GOOD = {**PARAMS, "key": "k", "status": "ok", "nfe": 4, "rmse": 0.1}
BAD_LINES = {
    "garbage": ("garbage{", "not valid JSON"),
    "truncated": (json.dumps(GOOD)[:20], "not valid JSON"),
    "nan literal": ('{"key": "k", "status": "ok", "nfe": 4, "rmse": NaN}', "non-JSON number NaN"),
    "infinity literal": ('{"key": "k", "status": "ok", "nfe": 4, "rmse": -Infinity}', "non-JSON number -Infinity"),
    "list": ("[1, 2]", "not a JSON object but a list"),
    "no key": ('{"status": "ok", "nfe": 4}', "no 'key' string"),
    "hollow": ('{"key": "k"}', "without an outcome"),
    "no measurements": ('{"key": "k", "status": "ok"}', "without measurements"),
    "bool nfe": ('{"key": "k", "status": "ok", "nfe": true}', "without measurements"),
    "bad status": ('{"key": "k", "status": "done", "nfe": 4}', "status 'done'"),
    "failed without error": ('{"key": "k", "status": "failed"}', "without an 'error'"),
}


@pytest.mark.parametrize("name", list(BAD_LINES))
def test_check_line_names_what_is_wrong(name):
    text, reason = BAD_LINES[name]
    assert reason in check_line(text.encode())
    assert check_line(json.dumps(GOOD).encode()) == GOOD


def _line(seed: int, status: str = "ok") -> str:
    cell = _cells([seed])[0]
    extra = {"nfe": 4} if status == "ok" else {"error": "E"}
    return json.dumps({**PARAMS, "seed": seed, "key": cell.key, "status": status, **extra}) + "\n"


@pytest.mark.parametrize("name", list(BAD_LINES))
def test_a_bad_line_in_the_middle_is_named_and_repair_sets_it_aside_and_reruns_its_cell(tmp_path, name):
    path = tmp_path / "results.jsonl"
    text, reason = BAD_LINES[name]
    path.write_text(_line(3) + text + "\n" + _line(1))
    with pytest.raises(StoreError, match=rf"results.jsonl line 2: .*{reason}.*--repair"):
        ResultStore(path)
    assert path.read_text() == _line(3) + text + "\n" + _line(1)  # refusing changes nothing
    store = ResultStore(path, repair=True)
    assert set(store.records) == {c.key for c in _cells([3, 1])}
    assert path.read_text() == _line(3) + _line(1)
    (aside,) = [json.loads(x) for x in (tmp_path / "results.bad.jsonl").read_text().splitlines()]
    assert aside["line"] == 2 and aside["text"] == text and reason in aside["reason"]
    fresh = []
    run_sweep(_cells([3, 1, 0]), store, progress=False, on_record=lambda r, f: fresh.append(f))
    assert fresh == [False, False, True]
    assert ResultStore(path).records.keys() == {c.key for c in _cells([3, 1, 0])}


def test_a_partial_last_line_from_a_kill_is_cut_off_silently(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(_line(0) + _line(1)[:30])
    store = ResultStore(path)
    assert list(store.records) == [_cells([0])[0].key] and path.read_text() == _line(0)
    store.append(json.loads(_line(2)))
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == [c.key for c in _cells([0, 2])]


def test_a_record_without_measurements_is_not_finished(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(_line(0) + json.dumps({"key": _cells([1])[0].key, "status": "ok"}) + "\n")
    store = ResultStore(path, repair=True)
    fresh = []
    run_sweep(_cells([0, 1]), store, progress=False, on_record=lambda r, f: fresh.append((r.get("rmse"), f)))
    assert fresh == [(None, False), (None, True)]  # seed 1: rmse inf → null, computed again


def test_shards_are_read_with_the_main_file_and_ok_beats_failed_whatever_the_order(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(_line(0, "ok") + _line(1, "failed"))
    (tmp_path / "results.shard-a.jsonl").write_text(_line(1, "ok") + _line(0, "failed"))
    (tmp_path / "results.shard-b.jsonl").write_text(_line(2, "failed") + _line(2, "failed").replace('"E"', '"F"'))
    (tmp_path / "results.bad.jsonl").write_text("not a shard\n")
    store = ResultStore(path)
    status = {k: r["status"] for k, r in store.records.items()}
    assert status == {c.key: s for c, s in zip(_cells([0, 1, 2]), ["ok", "ok", "failed"])}
    assert store.get(_cells([2])[0].key)["error"] == "F"  # same status: the later line wins
    writer = ResultStore(path, shard="b")
    writer.append(json.loads(_line(3)))
    assert (tmp_path / "results.shard-b.jsonl").read_text().endswith(_line(3))
    assert _cells([3])[0].key in ResultStore(path)


def test_a_results_path_that_is_a_folder_or_under_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "results.jsonl").mkdir()
    with pytest.raises(StoreError, match="is a folder; remove or rename it"):
        ResultStore(tmp_path / "results.jsonl")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="is a file, not a folder"):
        ResultStore(tmp_path / "afile" / "results.jsonl")


def test_clear_store_removes_records_shards_set_aside_lines_and_claims(tmp_path):
    from diffsolve.bench.store import clear_store

    path = tmp_path / "results.jsonl"
    path.write_text(_line(0) + "garbage\n")
    ResultStore(path, repair=True)
    ResultStore(path, shard="r1").append(json.loads(_line(1)))
    store = ResultStore(path)
    with store.claim("some cell"):
        pass
    (tmp_path / "table.md").write_text("kept")
    clear_store(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl.lock", "table.md"]
    assert ResultStore(path).records == {}


def test_the_cli_names_a_bad_line_and_repairs_it_with_repair(tmp_path, capsys):
    from diffsolve.cli import main

    args = ["bench", "--problem", "gmm-2d", "--solver", "euler", "--variable", "t", "--nfe", "2,4", "--n", "8",
            "--no-progress", "--no-report", "--out", str(tmp_path)]
    assert main(args) == 0
    path = tmp_path / "results.jsonl"
    first, second = path.read_text().splitlines()
    path.write_text(f"{first}\n{second[:40]}\n")  # a line truncated in the middle (not the last: it ends with \n)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffsolve bench: error: 1 bad line(s)") and "line 2: not valid JSON" in err
    assert "--repair" in err and path.read_text() == f"{first}\n{second[:40]}\n"
    assert main(args + ["--repair"]) == 0
    def timeless(line):
        return {k: v for k, v in json.loads(line).items() if k != "seconds"}

    assert [timeless(x) for x in path.read_text().splitlines()] == [timeless(first), timeless(second)]  # rerun
    assert json.loads((tmp_path / "results.bad.jsonl").read_text())["text"] == second[:40]
