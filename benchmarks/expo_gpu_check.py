"""GPU check of the exponential integrators: sync-free loops, CUDA-graph replay = eager, CPU-float64 agreement,
low-precision finiteness, per-step overhead beside diffusers. Run: python benchmarks/expo_gpu_check.py
(on a machine without CUDA it runs the same checks on the CPU, skipping the CUDA-only ones)."""

from __future__ import annotations

import statistics
import sys
import time
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
    if dev.type == "cuda":
        try:
            import diffusers  # noqa: F401
        except ImportError:
            print("diffusers is not installed: no overhead comparison")
        else:
            overhead()
    print("FAILURES", failures)


def overhead(steps: int = 20, repeats: int = 30) -> None:
    import diffusers

    x = torch.randn(256, 64, device=dev)
    cases = [("ddim", diffusers.DDIMScheduler(clip_sample=False), {"to_zero": True}),
             ("dpmpp2m", diffusers.DPMSolverMultistepScheduler(), {"to_zero": True}),
             ("unipc", diffusers.UniPCMultistepScheduler(), {"to_zero": True, "lower_order_final": True})]
    print(f"per-step time, trivial model (0.1 x), batch 256 x 64 fp32, {steps} steps, median of {repeats} (ms):")
    for name, sch, opts in cases:
        res = [per_step(fn, steps, repeats) for fn in runners(name, sch, opts, x, steps)]
        print(f"  {name:8s} diffusers {res[0]:.3f}  diffsolve eager {res[1]:.3f}  diffsolve graph {res[2]:.3f}")


def runners(name, sch, opts, x, steps):
    """diffusers' loop, diffsolve eager, diffsolve CUDA graph, on diffusers' timesteps."""
    schedule = ds.DiscreteDDPM(alphas_cumprod=sch.alphas_cumprod.double())
    model = ds.EpsModel(lambda v, t: 0.1 * v, schedule)
    sch.set_timesteps(steps)
    grid = grids.custom(schedule, schedule.t_from_step(sch.timesteps.double()))

    def run_diffusers() -> None:
        sch.set_timesteps(steps)
        v = x
        for t in sch.timesteps:
            v = sch.step(0.1 * v, t, v).prev_sample

    def eager() -> None:
        ds.solve(ds.ode(model, "lambda"), x, grid, name, **opts)

    def graph() -> None:
        ds.solve(ds.ode(model, "lambda"), x, grid, name, cuda_graph=True, **opts)

    return run_diffusers, eager, graph


def per_step(fn, steps: int, repeats: int) -> float:
    fn()
    sync()
    ts = []
    for _ in range(repeats):
        a = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - a)
    return 1e3 * statistics.median(ts) / steps

if __name__ == "__main__":
    main()
