"""Per-step cost and memory of per-sample noise against torch.randn of the same shape and the seeded dyadic path.

Per step: the CPU time (time.thread_time, so that other processes' time slices on a shared machine do not count) to
produce every increment of an S-step grid (set-up included) divided by S, the kinds interleaved, medians of 15
repeats, one thread. Memory: the bytes per-sample noise holds (exact), the
dyadic path's peak RSS growth in a fresh process (approximate).
Run: OMP_NUM_THREADS=1 python benchmarks/per_sample_noise.py   (timings on a shared machine are noisy: say so)
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time

import torch

from diffsolve import VPSDE, grids, problems
from diffsolve.solvers.brownian import brownian_path, grid_taus, per_sample_noise

CASES = [(16, 2, 10), (16, 64, 10), (16, 64, 100), (256, 64, 100), (16, 3072, 50), (1024, 2, 100)]


def dynamics():
    prob = problems.resolve("gmm-2d")
    sched = prob.default_schedule()
    return VPSDE(sched).reverse(prob.model(sched)), sched


def produce(kind: str, batch: int, dim: int, steps: int) -> float:
    """Seconds per step to produce the grid's increments of `kind`."""
    dyn, sched = dynamics()
    g = grids.build("logsnr", sched, steps)
    taus = grid_taus(dyn, g)
    t0 = time.thread_time()
    if kind == "randn":
        for _ in range(steps):
            torch.randn(batch, dim).mul_(0.1)
    else:
        x = torch.zeros(batch, dim)
        path = (per_sample_noise(dyn, g, x, list(range(batch))) if kind == "per-sample"
                else brownian_path(dyn, (batch, dim), x.dtype, "cpu", 0))
        for i in range(steps):
            path(taus[i], taus[i + 1])
    return (time.thread_time() - t0) / steps


def memory(kind: str, batch: int, dim: int, steps: int) -> None:
    """per-sample: the bytes its blocks hold (exact); dyadic: peak RSS growth of this fresh process (approximate)."""
    state = batch * dim * 4
    if kind == "per-sample":
        dyn, sched = dynamics()
        g = grids.build("logsnr", sched, steps)
        taus = grid_taus(dyn, g)
        path = per_sample_noise(dyn, g, torch.zeros(batch, dim), list(range(batch)))
        path(taus[0], taus[1])
        held = sum(b.numel() * b.element_size() for _, b in path._blocks.values())
        print(f"  per-sample holds {held / 2**20:7.2f} MiB = {held / state:6.1f}x the state ({state / 2**20:.2f} MiB)")
        return
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    produce(kind, batch, dim, steps)
    grow = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
    print(f"  {kind:10s} peak RSS growth {grow / 2**20:7.1f} MiB = {grow / state:6.1f}x the state "
          f"({state / 2**20:.2f} MiB)")


def main() -> None:
    torch.set_num_threads(1)
    for batch, dim, steps in CASES:
        kinds = ["randn", "per-sample"] + (["dyadic"] if batch * dim * steps <= 16 * 64 * 100 else [])
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(15):
            for k in kinds:
                times[k].append(produce(k, batch, dim, steps))
        med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
        print(f"batch {batch:5d} dim {dim:5d} steps {steps:4d}: "
              + ", ".join(f"{k} {v:8.1f} us/step" for k, v in med.items())
              + f"; per-sample/randn {med['per-sample'] / med['randn']:.2f}x"
              + (f", dyadic/randn {med['dyadic'] / med['randn']:.0f}x" if "dyadic" in med else ""), flush=True)
    for batch, dim, steps in [(64, 3072, 50), (256, 64, 100), (1024, 2, 100)]:
        print(f"memory, batch {batch} dim {dim} steps {steps}:", flush=True)
        for k in ("per-sample", "dyadic"):
            subprocess.run([sys.executable, __file__, "--memory", k, str(batch), str(dim), str(steps)], check=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory"]:
        torch.set_num_threads(1)
        memory(sys.argv[2], *map(int, sys.argv[3:6]))
    else:
        main()
