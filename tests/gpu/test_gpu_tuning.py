"""Tuning on CUDA: the network, the draws and the differentiable solve on the card, the plan's coefficients and the
grid's parameters float64 on the host (0-d tensors: no copy per step); the result agrees with the CPU's."""

from __future__ import annotations

import pytest
import torch

from diffsolve import nets
from diffsolve.tuning import tune

pytestmark = pytest.mark.gpu


def test_tuning_the_digits_unet_on_cuda_matches_the_cpu(cuda, tmp_path):
    kw = dict(shape=(1, 8, 8), train_seeds=[3], heldout_seeds=[4], n=64, candidates=16, batch_size=32, max_evals=6,
              progress=False)
    gpu, cpu = (tune(nets.load_checkpoint(nets.checkpoint_path("digits-8x8"), device=device)[0], "dpmpp2m", 6,
                     device=device, cache_dir=tmp_path / str(i), **kw)
                for i, device in enumerate((cuda, torch.device("cpu"))))
    assert gpu.gradient == "autograd" and gpu.train_error <= gpu.start_train_error
    assert gpu.teacher["nfe"] == cpu.teacher["nfe"] and gpu.start == cpu.start
    assert abs(gpu.start_train_error - cpu.start_train_error) <= 1e-4 * cpu.start_train_error  # float32 round-off
    teacher = [k for k in cpu.cost_by_stage if k.startswith("teacher")]
    assert [gpu.cost_by_stage[k] for k in teacher] == [cpu.cost_by_stage[k] for k in teacher]  # counted the same
