"""GPU check of the exponential integrators: sync-free loops, CUDA-graph replay = eager, CPU-float64 agreement,
low-precision finiteness. Run: python benchmarks/expo_gpu_check.py (on a machine without CUDA it runs the same
checks on the CPU, skipping the CUDA-only ones). Timings against diffusers: benchmarks/gpu_check.py."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import diffsolve as ds  # noqa: E402
from diffsolve import grids  # noqa: E402

FIXED = ["ddim", "dpm2", "dpm3", "dpmpp2s", "dpm2m", "dpm3m", "dpmpp2m", "dpmpp3m", "deis", "unipc"]
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
S = ds.VPLinear()
torch.manual_seed(0)
W = torch.randn(64, 64, dtype=torch.float64) / 8


_W: dict = {}


def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A smooth, sync-free ε-net: tanh(x W) scaled by a function of the time tensor (W moved once per dtype)."""
    key = (x.device, x.dtype)
    if key not in _W:
        _W[key] = W.to(device=x.device, dtype=x.dtype)
    w = _W[key]
    return torch.tanh(x @ w) * (0.5 + 0.5 * t.to(x.dtype)[:, None]) + 0.1 * x


def sync() -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    print(f"device {dev}: {torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}, torch {torch.__version__}")
    grid = grids.logsnr(S, 12)
    _ = grid.points
    x64 = torch.randn(128, 64, dtype=torch.float64)
    failures = 0
    for name in FIXED:
        model_cpu = ds.EpsModel(net, S)
        ref = ds.solve(ds.ode(model_cpu, "lambda"), x64, grid, name).x
        model = ds.EpsModel(net, S)
        x = x64.to(dev, torch.float32)
        dyn = ds.ode(model, "lambda")
        # 1. the loop issues no host sync (the net's one-off weight copy happens before the check)
        solver = ds.get_solver(name)
        net(x, torch.zeros(x.shape[0], device=dev))
        if dev.type == "cuda":
            torch.cuda.set_sync_debug_mode("error")
        try:
            solver.integrate(dyn, x, grid, record=False)
            sync_ok = True
        except RuntimeError as e:
            sync_ok = False
            print(f"  {name}: SYNC in loop: {e}")
        finally:
            if dev.type == "cuda":
                torch.cuda.set_sync_debug_mode(0)
        eager = ds.solve(dyn, x, grid, name)
        rel = float((eager.x.double().cpu() - ref).norm() / ref.norm())
        line = f"{name:8s} sync-free {sync_ok}  fp32-vs-cpu64 {rel:.1e}"
        ok = sync_ok and rel < 1e-5
        if dev.type == "cuda":
            g1 = ds.solve(dyn, x, grid, name, cuda_graph=True)
            g2 = ds.solve(dyn, 2 * x, grid, name, cuda_graph=True)
            e2 = ds.solve(dyn, 2 * x, grid, name)
            gd = max(float((g1.x - eager.x).abs().max()), float((g2.x - e2.x).abs().max()))
            line += f"  graph-vs-eager {gd:.1e} nfe {g1.nfe}/{eager.nfe}"
            ok = ok and gd < 1e-5 and g1.nfe == eager.nfe
            for dtype in (torch.float16, torch.bfloat16):
                low = ds.solve(ds.ode(ds.EpsModel(net, S), "lambda"), x64.to(dev, dtype), grid, name).x
                r = float((low.double().cpu() - ref).norm() / ref.norm())
                line += f"  {str(dtype)[6:]} {r:.1e}"
                ok = ok and bool(torch.isfinite(low).all()) and r < 5e-2
        failures += not ok
        print(line + ("" if ok else "  FAIL"))
    print("FAILURES", failures)


if __name__ == "__main__":
    main()
