"""Data-parallel tuning: under torchrun the draws' chunks are dealt to ranks and reduced in chunk order, so two gloo
ranks give the grid of one process, bit for bit, teacher errors, costs and all (docs/design.md §9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffsolve.tuning import tune

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ("times", "eval_times", "train_error", "heldout_error", "validation_error", "start", "chosen", "teacher",
            "cost_vjp_samples", "heldout_median", "heldout_p90", "evals")


@pytest.mark.slow  # torchrun with two processes (~7 s); .ci/run runs the slow set too
def test_two_ranks_give_the_grid_of_one_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "_tuning_ranks.py"), str(tmp_path / "two"), str(tmp_path / "cache-two")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    one = tune("gmm-2d", "ipndm", [4, 5], train_seeds=[3], heldout_seeds=[4], n=24, candidates=8, max_evals=6,
               batch_size=8, cache_dir=tmp_path / "cache-one", progress=False, order=2)
    for tuned in one:
        tuned.save(tmp_path / f"one-{tuned.nfe}.json")
        a = json.loads((tmp_path / f"one-{tuned.nfe}.json").read_text())
        b = json.loads((tmp_path / f"two-{tuned.nfe}.json").read_text())
        assert {k: a.get(k) for k in MEASURED} == {k: b.get(k) for k in MEASURED}
        # every stage costs the same, but the setup (the autograd probe and the timed call) runs on each rank
        setup = a["cost_by_stage"].pop("setup"), b["cost_by_stage"].pop("setup")
        assert a["cost_by_stage"] == b["cost_by_stage"] and setup[1] == 2 * setup[0]
    assert len(list((tmp_path / "cache-two").glob("teacher-*.pt"))) == len(list((tmp_path / "cache-one").glob(
        "teacher-*.pt")))  # each chunk's teacher solved once, by the rank it was dealt to


@pytest.mark.parametrize("world", [2, 3])
def test_chunks_are_dealt_round_robin_and_every_draw_belongs_to_one_rank(world):
    from diffsolve.distributed import Rank
    from diffsolve.tuning.draws import Pool, chunks_of

    chunks = chunks_of([3, 9], 20, 8)
    assert [(c.seed, c.start, c.stop) for c in chunks] == [(3, 0, 8), (3, 8, 16), (3, 16, 20), (9, 0, 8),
                                                          (9, 8, 16), (9, 16, 20)]
    mine = [Pool(chunks, Rank(r, world)).mine for r in range(world)]
    assert sorted(c.index for m in mine for c in m) == list(range(len(chunks)))
