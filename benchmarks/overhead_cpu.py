"""Per-step solver overhead on the CPU: diffsolve's exponential integrators beside diffusers' schedulers.

A trivial network (ε = 0.1·x) on a batch of 256 × 64 float32 states, one thread; the same DDPM table
and the same timesteps (diffusers' own) for both. Each cell is the median over repeats of a whole
sampling run divided by its steps:
  diffusers: set_timesteps + for t: net, scheduler.step;
  diffsolve (cold): build the grid from the timesteps + solve (coefficients computed on the new grid);
  diffsolve (warm): solve on a grid built once (coefficients cached on the grid).
Run: OMP_NUM_THREADS=1 python benchmarks/overhead_cpu.py [--repeats 30] [--steps 10 20 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import diffsolve as ds  # noqa: E402
from diffsolve import grids  # noqa: E402

BATCH, DIM = 256, 64


def trivial_net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return x * 0.1


def median_ms(runs: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each run in ms, the runs interleaved so that load from elsewhere hits all alike."""
    for run in runs:
        run()  # warm-up
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, bucket in zip(runs, times):
            start = time.perf_counter()
            run()
            bucket.append(time.perf_counter() - start)
    return [1e3 * statistics.median(bucket) for bucket in times]


def runners(scheduler, schedule, dyn, t_grid, warm_grid, name, opts, x_T, steps):
    """The three timed runs of one cell: diffusers' loop, diffsolve on a new grid, diffsolve on a reused grid."""

    def run_diffusers() -> torch.Tensor:
        scheduler.set_timesteps(steps)
        x = x_T
        for t in scheduler.timesteps:
            x = scheduler.step(trivial_net(x, t), t, x).prev_sample
        return x

    def run_cold() -> torch.Tensor:
        return ds.solve(dyn, x_T, grids.custom(schedule, t_grid), name, **opts).x

    def run_warm() -> torch.Tensor:
        return ds.solve(dyn, x_T, warm_grid, name, **opts).x

    return run_diffusers, run_cold, run_warm


def cases():
    import diffusers

    return [  # (diffsolve solver, diffusers scheduler in its default configuration, matching options)
        ("ddim", lambda: diffusers.DDIMScheduler(clip_sample=False), {"to_zero": True}),
        ("dpmpp2m", lambda: diffusers.DPMSolverMultistepScheduler(), {"to_zero": True}),
        ("unipc", lambda: diffusers.UniPCMultistepScheduler(), {"to_zero": True, "lower_order_final": True}),
    ]


def measure(steps: int, repeats: int) -> list[tuple[str, int, float, float, float]]:
    rows = []
    x_T = torch.randn(BATCH, DIM, generator=torch.Generator().manual_seed(0))
    for name, make, options in cases():
        scheduler = make()
        schedule = ds.DiscreteDDPM(alphas_cumprod=scheduler.alphas_cumprod.to(torch.float64))
        model = ds.wrap(trivial_net, schedule, "eps")
        dyn = ds.ode(model, "lambda")
        scheduler.set_timesteps(steps)
        t_grid = schedule.t_from_step(scheduler.timesteps.to(torch.float64))
        if not options.get("to_zero"):
            t_grid = torch.cat([t_grid, schedule.t_from_step(torch.tensor([0.0]))])
        opts = dict(options, **({"lower_order_final": steps < 15} if name == "dpmpp2m" else {}))

        warm_grid = grids.custom(schedule, t_grid)
        run_diffusers, run_cold, run_warm = runners(scheduler, schedule, dyn, t_grid, warm_grid, name, opts, x_T, steps)

        a, b = run_diffusers(), run_cold()
        assert a.shape == b.shape
        per = [ms / steps for ms in median_ms([run_diffusers, run_cold, run_warm], repeats)]
        rows.append((name, steps, *per))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, batch {BATCH} x {DIM} float32, 1 thread, median of {args.repeats}")
    print("| solver | steps | diffusers ms/step | diffsolve cold ms/step | diffsolve warm ms/step "
          "| cold / diffusers | warm / diffusers |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for steps in args.steps:
        for name, n, d, cold, warm in measure(steps, args.repeats):
            print(f"| {name} | {n} | {d:.3f} | {cold:.3f} | {warm:.3f} | {cold / d:.2f} | {warm / d:.2f} |")


if __name__ == "__main__":
    main()
