"""Run under torchrun by tests/test_tuning_ranks.py: tune a small grid data-parallel; rank 0 writes it to argv[1]."""

import sys

import torch

import diffsolve.distributed as distributed
from diffsolve.tuning import tune

torch.set_num_threads(1)
tuned = tune("gmm-2d", "ipndm", [4, 5], train_seeds=[3], heldout_seeds=[4], n=24, candidates=8, max_evals=6,
             batch_size=8, cache_dir=sys.argv[2], progress=False, order=2)
if distributed.from_env().rank == 0:
    for t in tuned:
        t.save(f"{sys.argv[1]}-{t.nfe}.json")
