"""The benchmark scripts' machinery, fast: RESULTS.md's generator, the smoke arguments, the claims, the committed
results' claims. The scripts themselves run in `python -m benchmarks.smoke` (CI), never here."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from benchmarks import (
    defaults,
    gpu_timing,
    lower_order_final,
    overhead,
    peers_accuracy,
    results_md,
    sde_orders,
    smoke,
    tuned_grids,
)
from benchmarks.common import RESULTS, Claims, out_path, read_json
from benchmarks.peers import MissingPeer

BENCHMARKS = Path(results_md.__file__).resolve().parent
SHARED = {"__init__", "common", "heldout", "peers", "results_md", "smoke"}  # modules, not scripts


def edited_copy(tmp_path: Path, edit) -> Path:
    path = tmp_path / "RESULTS.md"
    path.write_text(edit(results_md.RESULTS_MD.read_text(encoding="utf-8")), encoding="utf-8")
    return path


def test_results_md_is_what_the_committed_files_give(capsys):
    assert results_md.main(["--check"]) == 0, capsys.readouterr().out


def test_the_generator_round_trips_and_check_catches_an_edited_table(tmp_path, capsys):
    original = results_md.RESULTS_MD.read_text(encoding="utf-8")
    # a digit changed inside a generated table (the tuned gmm-64 row at NFE 5: 0.47×)
    path = edited_copy(tmp_path, lambda t: t.replace("| 0.085 | 0.47× |", "| 0.085 | 0.46× |", 1))
    assert path.read_text(encoding="utf-8") != original
    assert results_md.main(["--check", "--file", str(path)]) == 1
    diff = capsys.readouterr().out.splitlines()
    removed = [d[1:] for d in diff if d.startswith("-| 5 |")]
    added = [d[1:] for d in diff if d.startswith("+| 5 |")]
    assert len(added) == 1 and removed == [added[0].replace("0.47×", "0.46×")]
    assert results_md.main(["--file", str(path)]) == 0  # rewrites it from the files …
    assert path.read_text(encoding="utf-8") == original  # … back to the committed text
    assert results_md.main(["--check", "--file", str(path)]) == 0


def test_check_catches_a_table_that_is_neither_generated_nor_marked(tmp_path, capsys):
    path = edited_copy(tmp_path, lambda t: t + "\n## New\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert results_md.main(["--check", "--file", str(path)]) == 1
    assert "neither generated nor under" in capsys.readouterr().out
    path = edited_copy(tmp_path, lambda t: t + "\n## New\n\n<!-- hand-written: typed in -->\n\n| a | b |\n|---|---|\n")
    assert results_md.main(["--check", "--file", str(path)]) == 0


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("<!-- generated: sde-orders -->", "<!-- generated: sde-order -->"), "unknown"),
    (lambda t: t.replace("<!-- generated: sde-orders -->", "<!-- generated: sde-strong -->"), "repeated"),
    (lambda t: t[:t.rindex(results_md.END)], "no '<!-- end generated -->'"),
    (lambda t: results_md.END + "\n" + t, "without a"),
])
def test_check_refuses_broken_markers(tmp_path, capsys, edit, message):
    path = edited_copy(tmp_path, edit)
    assert results_md.main(["--check", "--file", str(path)]) == 1
    assert message in capsys.readouterr().out


def test_every_section_renders_a_table_from_the_files():
    for name, render in results_md.SECTIONS.items():
        text = render(RESULTS)
        assert re.search(r"^\|.*\|$", text, flags=re.M), name
        assert not re.search(r"\bnan\b", text), name  # no missing cell rendered as nan


def test_every_script_has_a_smoke_mode_and_is_in_the_smoke_run():
    scripts = {p.stem for p in BENCHMARKS.glob("*.py")} - SHARED
    assert scripts == set(smoke.SCRIPTS)
    for name in smoke.SCRIPTS:
        module = importlib.import_module(f"benchmarks.{name}")
        args = module.parser().parse_args(["--smoke", "--out", "somewhere"])
        assert args.smoke is True and args.out == "somewhere", name
        assert module.parser().parse_args([]).smoke is False, name


def test_no_script_edits_sys_path():
    for path in BENCHMARKS.glob("*.py"):
        assert "sys.path" not in path.read_text(encoding="utf-8"), path.name


def test_a_smoke_run_never_writes_into_the_committed_results(tmp_path):
    args = tuned_grids.parser().parse_args(["--smoke", "--out", str(RESULTS / "tuned-gmm-64")])
    with pytest.raises(SystemExit, match="temporary folder"):
        out_path(args, "tuned_grids")
    args = tuned_grids.parser().parse_args(["--smoke"])
    assert not out_path(args, "tuned_grids").resolve().is_relative_to(RESULTS)
    args = tuned_grids.parser().parse_args(["--smoke", "--out", str(tmp_path / "x")])
    assert out_path(args, "tuned_grids") == tmp_path / "x"


def test_claims_exit_status(capsys):
    claims = Claims("demo")
    claims.check(True, "holds")
    assert claims.exit_status() == 0
    claims.check(False, "1 + 1 = 3")
    assert claims.exit_status() == 1
    out = capsys.readouterr().out
    assert "FAIL demo: 1 + 1 = 3" in out and "FAIL demo: 1 of 2 claims failed" in out
    smoke_claims = Claims("demo", smoke=True)
    smoke_claims.check(False, "a timing ratio", full_size_only=True)  # printed, not asserted at smoke size
    assert smoke_claims.exit_status() == 0
    assert "does not hold at smoke size" in capsys.readouterr().out
    smoke_claims.check(False, "a structural claim")  # asserted at every size
    assert smoke_claims.exit_status() == 1


def test_a_missing_peer_leaves_its_pairs_out_in_smoke_mode_only(monkeypatch):
    def missing():
        raise MissingPeer("k-diffusion")

    monkeypatch.setattr(overhead, "load_k_diffusion_sampling", missing)
    kept, kd, notes = overhead.load_peers(["dpmpp2m", "heun", "ddim"], smoke=True)
    assert kept == ["ddim"] and kd is None
    assert any("pip install --no-deps k-diffusion" in n for n in notes)
    with pytest.raises(MissingPeer):
        overhead.load_peers(["dpmpp2m", "ddim"], smoke=False)


def committed(name: str):
    return read_json(RESULTS / f"{name}.json")


def test_the_committed_results_support_the_scripts_claims(capsys):
    """What each script asserts after a run, asserted on the committed result files (`--render` does the same)."""
    claims = Claims("committed")
    for name in ("tuned-gmm-64", "tuned-gmm-2d", "tuned-toy-2d", "tuned-digits-8x8"):
        tuned_grids.check(committed(name), claims)
    defaults.check([committed(f"defaults-{n}") for n in defaults.PROBLEMS], claims)
    peers_accuracy.check(committed("peers-gmm-64"), claims)
    for name in ("lower-order-final", "lower-order-final-digits"):
        lower_order_final.check(committed(name), claims)
    sde_orders.check(committed("sde-orders"), claims)
    gpu_timing.check(read_json(RESULTS / "gpu" / "gpu_check.json"), claims)
    assert claims.exit_status() == 0, capsys.readouterr().out
    assert claims.passed > 100


def test_a_wrong_result_fails_its_claim():
    rows = committed("tuned-toy-2d")
    rows[0]["tuned_all"][0]["err"] = 10.0  # worse than every standard grid of its solver
    claims = Claims("tuned_grids")
    tuned_grids.check(rows, claims)
    assert claims.exit_status() == 1
    rows = committed("sde-orders")
    rows[0]["order"] = rows[0]["theory"] + 0.5
    claims = Claims("sde_orders")
    sde_orders.check(rows, claims)
    assert claims.exit_status() == 1
