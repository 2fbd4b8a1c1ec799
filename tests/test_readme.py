"""The README's first Python example runs as written (on the installed package, with the shipped model)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_first_python_block_runs_verbatim(capsys):
    first = python_blocks()[0]
    namespace: dict = {}
    exec(compile(first, "README.md (first python block)", "exec"), namespace)
    sol = namespace["sol"]
    assert sol.x.shape == (16, 2) and bool(torch.isfinite(sol.x).all()) and sol.nfe > 0
    assert capsys.readouterr().out.strip() == f"torch.Size([16, 2]) {sol.nfe}"


def test_the_own_model_block_benchmarks_a_network(tmp_path, monkeypatch):
    """The second block: the user's network through ds.bench.run in ≤ 15 lines, writing its plot."""
    block = python_blocks()[1]
    assert len(block.strip().splitlines()) <= 15
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md (own-model block)", "exec"), namespace)
    res = namespace["res"]
    assert (tmp_path / "my_model.png").read_bytes()[:4] == b"\x89PNG"
    assert {r["solver"] for r in res.records} == {"euler", "heun", "dpmpp2m", "unipc"} and not res.failed
    best = res.best(10)
    assert best["nfe"] <= 10 and best["rmse"] == min(r["rmse"] for r in res.records if r["nfe"] <= 10)
