"""The shipped networks, the PF-ODE likelihood and the diffusers adapter on CUDA.

Was benchmarks/gpu_models_check.py (which printed these; measured on an H200: GPU vs CPU digits 5.5e-3,
likelihood 0.697 nats/dim exact with 278 NFE, DDIM through the adapter 6.1e-5 from diffusers where |x| ≈ 190).
"""

from __future__ import annotations

import pytest
import torch

import diffsolve as ds
from diffsolve import nets
from diffsolve.likelihood import log_likelihood

pytestmark = pytest.mark.gpu


def test_digits_sample_on_gpu_matches_the_cpu(cuda):
    """dpmpp2m at NFE 20, float32: finite, 20 NFE, within 2e-2 of the CPU sample (pixel range [−1, 1];
    float32 convolution round-off through 20 steps, measured 5.5e-3)."""
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    gpu = ds.sample(nets.load_pretrained("digits-8x8", device=cuda), x.to(cuda), solver="dpmpp2m", nfe=20)
    cpu = ds.sample(nets.load_pretrained("digits-8x8", device="cpu"), x, solver="dpmpp2m", nfe=20)
    assert gpu.x.device.type == "cuda" and gpu.nfe == cpu.nfe == 20
    assert bool(torch.isfinite(gpu.x).all())
    assert float((gpu.x.cpu() - cpu.x).abs().max()) < 2e-2


def test_likelihood_on_gpu_matches_the_cpu(cuda):
    """Exact-trace log-likelihood of toy-2d points (float64): GPU = CPU to 1e-4 nats/dim (rtol = atol = 1e-6
    adaptive solves); the Hutchinson estimate runs on CUDA and is finite."""
    xt = nets.toy_2d(200, 5).double()
    gpu = log_likelihood(nets.load_pretrained("toy-2d", dtype=torch.float64, device=cuda), xt.to(cuda))
    cpu = log_likelihood(nets.load_pretrained("toy-2d", dtype=torch.float64), xt)
    assert gpu.logp.device.type == "cuda" and gpu.nfe > 0
    assert float((gpu.nats_per_dim.cpu() - cpu.nats_per_dim).abs().max()) < 1e-4
    hutch = log_likelihood(nets.load_pretrained("toy-2d", dtype=torch.float64, device=cuda), xt.to(cuda),
                           divergence="hutchinson")
    assert hutch.logp.device.type == "cuda" and bool(torch.isfinite(hutch.logp).all())


def test_ddim_through_the_adapter_matches_diffusers_on_gpu(cuda):
    """from_diffusers + Euler in σ̄ on diffusers' timesteps = diffusers' DDIMScheduler loop (the CPU test's
    tolerance, tests/test_interop.py)."""
    diffusers = pytest.importorskip("diffusers")
    from diffsolve.interop import from_diffusers, grid_from_timesteps

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=4,
    ).to(cuda).eval()
    sched = diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=False)
    sched.set_timesteps(10)
    x_T = torch.randn(2, 3, 8, 8, device=cuda, generator=torch.Generator(cuda).manual_seed(0))
    y = x_T.clone()
    with torch.no_grad():
        for n in sched.timesteps:
            y = sched.step(unet(y, n).sample, n, y).prev_sample
        model = from_diffusers(unet, sched)
        sol = ds.solve(ds.DDIMODE(model, "sigma"), x_T, grid_from_timesteps(model.schedule, sched.timesteps), "euler")
    assert sol.x.device.type == "cuda"
    torch.testing.assert_close(sol.x, y, rtol=1e-4, atol=1e-5)
    assert float((sol.x - x_T).abs().max()) > 0.1
