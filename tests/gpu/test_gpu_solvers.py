"""Every fixed-step solver on CUDA: no host sync in the loop, CUDA-graph replay = eager, float32 on the GPU
= float64 on the CPU, finite and close in float16/bfloat16, and the UNet's peak memory beyond its forward.

Was benchmarks/expo_gpu_check.py and the checks of benchmarks/gpu_check.py, which printed these numbers;
the tolerances are theirs (measured on an H100: float32 1.6e-07–3.8e-07, bfloat16 ≤ 1.7e-02, graph = eager
bit for bit, 2.34 / 3.01 / 5.01 extra state copies for ddim / dpmpp2m / unipc).
"""

from __future__ import annotations

import pytest
import torch

import diffsolve as ds
from diffsolve.plan import dynamics_for

pytestmark = pytest.mark.gpu

S = ds.VPLinear()
W = torch.randn(64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) / 8


class SmoothNet:
    """A smooth, sync-free ε-net: tanh(x W)(½ + ½ t) + 0.1 x, with W moved once per (device, dtype)."""

    def __init__(self) -> None:
        self.weights: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        key = (x.device, x.dtype)
        if key not in self.weights:
            self.weights[key] = W.to(device=x.device, dtype=x.dtype)
        return torch.tanh(x @ self.weights[key]) * (0.5 + 0.5 * t.to(x.dtype)[:, None]) + 0.1 * x


def _ode(model: ds.Model, name: str) -> ds.Dynamics:
    """The ODE a solver steps: in its own variable where it declares one (λ, or σ̄ for iPNDM), else in λ."""
    return dynamics_for(model, name, {}, None if ds.get_solver(name).integrates.variables else "lambda")


def _setup(name: str, cuda: torch.device, dtype: torch.dtype = torch.float32):
    """(λ-ODE of the net, the state on the GPU, a 12-step logSNR grid, the float64 CPU solution)."""
    net = SmoothNet()
    grid = ds.grids.logsnr(S, 12)
    x64 = torch.randn(128, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = ds.solve(_ode(ds.EpsModel(net, S), name), x64, grid, name).x
    net(x64.to(cuda, dtype), torch.zeros(128, device=cuda))  # the weight copy happens here, not in the loop
    return _ode(ds.EpsModel(net, S), name), x64.to(cuda, dtype), grid, ref


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.double().cpu() - ref).norm() / ref.norm())


def test_loop_issues_no_host_sync(fixed_step_solver, cuda):
    dyn, x, grid, _ = _setup(fixed_step_solver, cuda)
    _ = grid.points
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, _ = ds.get_solver(fixed_step_solver).integrate(dyn, x, grid, record=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device.type == "cuda"


def test_float32_on_gpu_matches_float64_on_cpu(fixed_step_solver, cuda):
    dyn, x, grid, ref = _setup(fixed_step_solver, cuda)
    sol = ds.solve(dyn, x, grid, fixed_step_solver)
    assert sol.x.device.type == "cuda" and sol.nfe == ds.get_solver(fixed_step_solver).nfe_for(grid.steps)
    assert _rel(sol.x, ref) < 1e-5


def test_cuda_graph_replay_equals_eager(fixed_step_solver, cuda):
    dyn, x, grid, _ = _setup(fixed_step_solver, cuda)
    with torch.no_grad():
        eager, eager2 = ds.solve(dyn, x, grid, fixed_step_solver), ds.solve(dyn, 2 * x, grid, fixed_step_solver)
        g1 = ds.solve(dyn, x, grid, fixed_step_solver, cuda_graph=True)
        g2 = ds.solve(dyn, 2 * x, grid, fixed_step_solver, cuda_graph=True)  # a replay on new input
    assert g1.nfe == g2.nfe == eager.nfe
    assert float((g1.x - eager.x).abs().max()) <= 1e-5
    assert float((g2.x - eager2.x).abs().max()) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_low_precision_is_finite_and_close(fixed_step_solver, dtype, cuda):
    dyn, x, grid, ref = _setup(fixed_step_solver, cuda, dtype)
    low = ds.solve(dyn, x, grid, fixed_step_solver).x
    assert low.dtype == dtype and bool(torch.isfinite(low).all())
    assert _rel(low, ref) < 5e-2


@pytest.mark.parametrize("name", ["ddim", "dpmpp2m", "unipc"])
def test_peak_memory_beyond_the_forward_is_a_few_state_copies(name, cuda):
    """Sampling with a 35.7 M UNet (DDPM-CIFAR10 layout, bf16, batch 256, 32×32) needs at most order + 2 states
    beyond the network's own forward peak (+0.25 of a state for the allocator's rounding and coefficients)."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    ).to(device=cuda, dtype=torch.bfloat16).eval()
    schedule = ds.DiscreteDDPM()

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x, t).sample

    x = torch.randn(256, 3, 32, 32, device=cuda, dtype=torch.bfloat16)
    grid = ds.grids.logsnr(schedule, 10)
    with torch.no_grad():
        eps(x, torch.full((256,), 500.0, device=cuda))  # warm-up: cuDNN workspaces are not the solver's
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        eps(x, torch.full((256,), 500.0, device=cuda))
        forward_peak = torch.cuda.max_memory_allocated() - base
        torch.cuda.reset_peak_memory_stats()
        sol = ds.solve(_ode(ds.EpsModel(eps, schedule), name), x, grid, name)
        sampling_peak = torch.cuda.max_memory_allocated() - base
    assert bool(torch.isfinite(sol.x).all())
    copies = (sampling_peak - forward_peak) / (x.numel() * x.element_size())
    assert copies <= float(ds.get_solver(name).order) + 2.25, copies
