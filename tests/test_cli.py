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
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 2 * 2
    rows = [json.loads(line) for line in lines]
    for row in rows:
        for key, typ in TYPES.items():
            assert isinstance(row[key], typ), (key, row[key])
    assert {(r["solver"], r["variable"], r["nfe"]) for r in rows} == {
        (s, v, n) for s in ("euler", "heun") for v in ("sigma", "lambda") for n in (4, 8)}
    assert (tmp_path / "results.csv").exists() and (tmp_path / "rmse_vs_nfe.png").exists()
    # rerun: the same lines come from the store, nothing is appended
    assert main(ARGS + ["--out", str(tmp_path)]) == 0
    assert [json.loads(x)["key"] for x in capsys.readouterr().out.splitlines()] == [r["key"] for r in rows]
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
                "--no-report", "--list"):
        assert opt in out
    assert main(["bench", "--suite", "default", "--solver", "euler"]) == 2
    assert "not both" in capsys.readouterr().err
