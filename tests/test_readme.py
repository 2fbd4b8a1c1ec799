"""The README runs as written: every Python block (the slow ones with -m slow, the ones marked not run are skipped
with their reason) and every shell block marked runnable (tests/readme_blocks.py reads the markers). A few
blocks get checks of what they claim: the first-day walk-throughs, and the committed grids results that a rerun of the
README's command reuses instead of recomputing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.readme_blocks import ROOT, Block, blocks, run_block

BLOCKS = [b for b in blocks() if b.lang in ("python", "bash")]




def _param(b: Block):
    marks = [pytest.mark.slow] if b.slow else []
    if b.skipped:
        marks.append(pytest.mark.skip(reason=b.skipped))
    return pytest.param(b, id=f"{b.lang}-line{b.line}", marks=marks)


def test_the_readme_has_the_blocks_this_test_expects():
    """A block whose marker is misspelt would silently not run: every marker is one of the known ones."""
    assert {b.marker.partition(":")[0] for b in BLOCKS} <= {"", "slow", "not run", "runnable", "runnable slow"}
    day = [b for b in BLOCKS if b.heading.startswith("I ")]
    assert {b.heading for b in day} == {"I have a diffusers pipeline", "I have my own network", "I research samplers"}
    for b in day:  # each walk-through block is at most 20 lines and runs
        assert len(b.code.strip().splitlines()) <= 20 and b.skipped is None, (b.heading, b.line)
    assert not BLOCKS[0].skipped or BLOCKS[0].lang == "bash"


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS if b.lang == "python"])
def test_python_block_runs_verbatim(block: Block, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(block.code, f"README.md line {block.line}", "exec"), namespace)
    out = capsys.readouterr().out
    check = CHECKS.get(block.heading)
    if check is not None:
        check(namespace, out, tmp_path)


def _grids_copy(folder: Path) -> Path:
    """The committed grids suite and its results, where the README's command expects them."""
    (folder / "benchmarks" / "results").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "grids.toml", folder / "benchmarks" / "grids.toml")
    shutil.copytree(ROOT / "benchmarks" / "results" / "grids", folder / "benchmarks" / "results" / "grids",
                    ignore=shutil.ignore_patterns("cache", "*.lock", ".*"))
    return folder / "benchmarks" / "results" / "grids" / "results.jsonl"


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS if b.lang == "bash"])
def test_runnable_shell_block_runs_verbatim(block: Block, tmp_path):
    stored = _grids_copy(tmp_path)
    before = stored.read_bytes()
    proc = run_block(block, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert stored.read_bytes() == before  # the committed results are reused: no cell is recomputed or appended
    if "benchmarks/grids.toml" in block.code:
        assert len(before.splitlines()) == 48 and "**Best per NFE**" in proc.stdout
        assert "computed again" not in proc.stderr  # no record predates the fingerprints any more
    if "mymodel.py:model" in block.code:
        rows = [json.loads(x) for x in (tmp_path / "my-bench" / "results.jsonl").read_text().splitlines()]
        assert len(rows) == (3 + 1) * 3  # heun in t, σ̄ and λ (the CLI's default variables), dpmpp2m in λ; 3 NFE
        assert all(r["status"] == "ok" and r["data_sw2"] is not None for r in rows)
        assert proc.stdout.startswith("**Best per NFE**") and "### Quality against the data" in proc.stdout


def _quick_start(ns: dict, out: str, tmp: Path) -> None:
    sol = ns["sol"]
    assert sol.x.shape == (16, 2) and bool(torch.isfinite(sol.x).all()) and sol.nfe > 0
    assert out.strip() == f"torch.Size([16, 2]) {sol.nfe}"


def _own_network(ns: dict, out: str, tmp: Path) -> None:
    res = ns["res"]
    assert {r["solver"] for r in res.records} == {"euler", "heun", "dpmpp2m", "unipc"} and not res.failed
    best = res.best(10)
    assert best["nfe"] <= 10 and best["rmse"] == min(r["rmse"] for r in res.records if r["nfe"] <= 10)
    assert out.startswith("**Best per NFE**") and str(best) in out
    assert (tmp / "my-bench" / "table.md").read_text(encoding="utf-8").startswith("**Best per NFE**")
    assert (tmp / "my-bench" / "best_vs_nfe.png").read_bytes()[:4] == b"\x89PNG"
    assert all(r["data_sw2"] is not None and r["data_sw2_floor"] > 0 for r in res.records)


def _research(ns: dict, out: str, tmp: Path) -> None:
    orders = {row["solver"]: row["order"] for row in ns["res"].rows()}
    assert orders["ssprk3"] == pytest.approx(3.0, abs=0.3)  # the new tableau's declared order, fitted
    assert orders["heun"] == pytest.approx(2.0, abs=0.2)
    assert "ssprk3 sigma order" in out and "× baseline" in out


def _diffusers(ns: dict, out: str, tmp: Path) -> None:
    assert ns["images"].shape == (4, 8, 8, 1) and ns["best"]["solver"] in ("ddim", "dpmpp2m", "unipc", "ipndm")


def _seeds(ns: dict, out: str, tmp: Path) -> None:
    assert out.strip() == "True"


CHECKS = {"Quick start": _quick_start, "I have my own network": _own_network, "I research samplers": _research,
          "I have a diffusers pipeline": _diffusers, "More than one process or machine": _seeds}
