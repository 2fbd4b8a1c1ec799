"""Scale-out: results do not depend on how the work is split (CPU, gloo, 2 processes under torchrun, or --shard).

- dealing: item k goes to rank k mod n, a partition of the items for every n;
- data-parallel sampling: samples.pt is bit-identical for world sizes 1 and 2 and batch sizes 3, 4, 5, and row i is
  exactly ds.sample of x_T(1, seed + i) alone with seed=[seed + i]; a removed batch is recomputed bit for bit;
- sweeps: 2 torchrun ranks give the same cells with bit-identical errors as 1 process, solving the shared reference
  once; --shard 0/2 + 1/2 then --merge gives the same; killing one rank mid-sweep and resuming loses no cell.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import diffsolve as ds
from diffsolve import distributed, parallel_sample, problems
from diffsolve.cli import main
from diffsolve.errors import DiffsolveError

ROOT = Path(__file__).resolve().parents[1]
BENCH = ["bench", "--problem", "gmm-2d", "--solver", "euler,heun", "--variable", "sigma", "--nfe", "4,8,16",
         "--n", "8", "--no-progress", "--threads", "1"]
SAMPLE = ["sample", "--problem", "gmm-2d", "--solver", "ddpm", "--nfe", "6", "--n", "11", "--seed", "40",
          "--dtype", "float64", "--no-progress"]


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    out.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return out


def torchrun(args: list[str], nproc: int = 2, **kw) -> subprocess.Popen:
    """`torchrun --standalone --nproc_per_node=nproc -m diffsolve -- ARGS` (a free port; '--' keeps torchrun's own
    parser off our options)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "diffsolve", "--", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kw)


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def records(folder: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for p in [folder / "results.jsonl", *sorted(folder.glob("results.shard-*.jsonl"))]:
        if p.exists():
            for line in p.read_text().splitlines():
                r = json.loads(line)
                out[r["key"]] = r
    return out


MEASURED = ("nfe", "steps", "rmse", "rel_err", "max_err", "ref_err", "sw2", "sw2_floor", "status")


def same_cells(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert {f: a[k][f] for f in MEASURED} == {f: b[k][f] for f in MEASURED}, k


# ---- dealing -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("world", [1, 2, 3, 7, 12])
def test_dealing_is_a_round_robin_partition(world):
    items = list(range(10))
    parts = [distributed.deal(items, distributed.Rank(r, world)) for r in range(world)]
    assert sorted(sum(parts, [])) == items
    for r, part in enumerate(parts):
        assert all(k % world == r for k in part)


@pytest.mark.parametrize("text", ["2/2", "-1/2", "0/0", "a/b", "1", "1/2/3"])
def test_bad_shard_is_refused(text):
    with pytest.raises(DiffsolveError, match="--shard takes i/n"):
        distributed.parse_shard(text)


def test_rank_from_torchrun_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert distributed.from_env() == distributed.Rank(3, 4, group=True)
    with pytest.raises(DiffsolveError, match="torchrun already deals"):
        distributed.start("0/2")
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(DiffsolveError, match="RANK=4 and WORLD_SIZE=4"):
        distributed.from_env()
    monkeypatch.delenv("RANK")
    assert distributed.from_env() == distributed.Rank()


# ---- data-parallel sampling ----------------------------------------------------------------------------------------
@pytest.mark.slow  # run by `python -m pytest -m slow` (CI runs both)
def test_samples_do_not_depend_on_world_or_batch_size(tmp_path, monkeypatch):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    two = torchrun([*SAMPLE, "--batch", "5", "--out", str(tmp_path / "w2b5")])  # runs while this process works
    assert main([*SAMPLE, "--batch", "4", "--out", str(tmp_path / "w1b4")]) == 0
    for i in range(2):  # a job array of two, batch 3
        assert main([*SAMPLE, "--batch", "3", "--shard", f"{i}/2", "--out", str(tmp_path / "s2b3")]) == 0
    finish(two)
    ref = torch.load(tmp_path / "w1b4" / "samples.pt")
    assert ref["x"].shape == (11, 2) and ref["seeds"] == list(range(40, 51))
    for other in ("w2b5", "s2b3"):
        assert torch.equal(torch.load(tmp_path / other / "samples.pt")["x"], ref["x"])
    assert len(list((tmp_path / "w2b5" / "batches").glob("*.pt"))) == 3
    # row i is the sample of seed 40 + i drawn on its own
    prob = problems.resolve("gmm-2d")
    sched = prob.default_schedule()
    model = prob.model(sched, dtype=torch.float64)
    for i in (0, 6, 10):
        alone = ds.sample(model, prob.x_T(1, 40 + i, sched), solver="ddpm", nfe=6, seed=[40 + i]).x
        assert torch.equal(alone[0], ref["x"][i])


def test_sampling_resumes_and_refuses_another_job(tmp_path, monkeypatch):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    out = tmp_path / "s"
    args = ["sample", "--problem", "gmm-2d", "--solver", "heun", "--nfe", "6", "--n", "7", "--batch", "3",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    first = torch.load(out / "samples.pt")["x"]
    batch_files = sorted((out / "batches").glob("*.pt"))
    kept = batch_files[0].stat().st_mtime_ns
    batch_files[1].unlink()
    (out / "samples.pt").unlink()
    assert main(args) == 0  # only the missing batch is sampled again
    assert batch_files[0].stat().st_mtime_ns == kept
    assert torch.equal(torch.load(out / "samples.pt")["x"], first)
    assert main([*args[:-3], "--batch", "2", "--out", str(out)]) == 2  # another batch size in the same folder
    job = parallel_sample.SampleJob("gmm-2d", "heun", 6, n=10, seed=2**30 - 5)
    with pytest.raises(DiffsolveError, match=r"must stay in \[0, 2\^30\)"):
        job.check()
    with pytest.raises(DiffsolveError, match="is not a torch device"):
        parallel_sample.SampleJob("gmm-2d", "heun", 6, n=10, device="gpu7").check()


# ---- sweeps ------------------------------------------------------------------------------------------------------
@pytest.mark.slow  # run by `python -m pytest -m slow` (CI runs both)
def test_two_ranks_equal_one_rank_and_share_the_reference(tmp_path, monkeypatch):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    two = torchrun([*BENCH, "--out", str(tmp_path / "two")])
    assert main([*BENCH, "--out", str(tmp_path / "one")]) == 0
    log = finish(two)
    assert log.count("reference for gmm-2d") == 1  # solved by one rank, read from the shared cache by the other
    assert "rank0-of-2: cells 0, 2" in log and "rank1-of-2: cells 1, 3" in log
    one, merged = records(tmp_path / "one"), records(tmp_path / "two")
    assert len(one) == 6
    same_cells(one, merged)
    assert not list((tmp_path / "two").glob("results.shard-*")), "rank 0 folds the shards into results.jsonl"
    assert (tmp_path / "two" / "table.md").exists()


def test_job_array_shards_then_merge(tmp_path, monkeypatch):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    out = tmp_path / "arr"
    for i in range(2):
        assert main([*BENCH, "--shard", f"{i}/2", "--out", str(out), "--no-report"]) == 0
    shards = sorted(p.name for p in out.glob("results.shard-*.jsonl"))
    assert shards == ["results.shard-rank0-of-2.jsonl", "results.shard-rank1-of-2.jsonl"]
    assert not (out / "table.md").exists()
    assert main([*BENCH, "--shard", "0/2", "--out", str(out), "--no-report"]) == 0  # rerun: nothing to do
    before = records(out)
    assert main([*BENCH, "--merge", str(out)]) == 0
    assert not list(out.glob("results.shard-*")) and (out / "table.md").exists()
    lines = (out / "results.jsonl").read_text()
    assert main([*BENCH, "--merge", str(out)]) == 0  # idempotent
    assert (out / "results.jsonl").read_text() == lines and len(lines.splitlines()) == 6
    assert main([*BENCH, "--out", str(tmp_path / "one")]) == 0
    same_cells(records(tmp_path / "one"), before)
    assert main([*BENCH, "--shard", "0/2", "--fresh", "--out", str(out)]) == 2


RUN_SCRIPT = """
import sys
import diffsolve as ds
res = ds.bench.run("gmm-2d", solvers=["euler", "heun"], variables=["sigma"], nfe=[4, 8, 16], n=8, out=sys.argv[1],
                   progress=False)
print(f"rank {res.rank.rank}: complete={res.complete} cells={len(res.records)}", flush=True)
"""


@pytest.mark.slow  # run by `python -m pytest -m slow` (CI runs both)
def test_bench_run_from_python_under_torchrun_splits_merges_and_reports_like_the_cli(tmp_path, monkeypatch):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    script = tmp_path / "run.py"
    script.write_text(RUN_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tmp_path / "two")]
    log = finish(subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True))
    assert "rank 0: complete=True cells=6" in log and "rank 1: complete=False cells=3" in log
    assert not list((tmp_path / "two").glob("results.shard-*")) and (tmp_path / "two" / "table.md").exists()
    assert main([*BENCH, "--out", str(tmp_path / "one")]) == 0
    same_cells(records(tmp_path / "one"), records(tmp_path / "two"))
    assert (tmp_path / "two" / "table.md").read_text() == (tmp_path / "one" / "table.md").read_text()


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for c in (task / "children").read_text().split():
            out += [int(c), *_children(int(c))]
    return out


def _rank_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((e[5:].decode() for e in environ if e.startswith(b"RANK=")), None)


@pytest.mark.slow  # ~30 s on a shared 2-core machine: a 20-cell sweep under torchrun, then its resume
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds torchrun's workers through /proc")
def test_killing_a_rank_loses_no_finished_cell(tmp_path, monkeypatch):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    out = tmp_path / "k"
    args = ["bench", "--problem", "gmm-2d", "--solver", "euler,heun", "--variable", "sigma", "--n", "8",
            "--nfe", "4,6,8,10,12,14,16,18,20,22", "--repeats", "30", "--no-progress", "--threads", "1",
            "--out", str(out), "--no-report"]
    run = torchrun(args, start_new_session=True)
    victim = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and run.poll() is None:
        if victim is None:
            victim = next((p for p in _children(run.pid) if _rank_of(p) == "1"), None)
        if victim is not None and len(records(out)) >= 2:
            os.kill(victim, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert victim is not None
    run.communicate(timeout=60)
    stored = records(out)
    assert 0 < len(stored) < 20, "killed mid-sweep: some cells finished, some not"
    assert run.returncode != 0
    assert main(args) == 0  # resume in one process
    final = records(out)
    assert len(final) == 20
    for k, r in stored.items():
        assert final[k] == r  # a finished cell is kept, not run again (its wall time is the one first measured)
