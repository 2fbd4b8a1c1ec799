"""Per-step cost and memory of per-sample noise against torch.randn of the same shape and the seeded dyadic path.

Per step: the CPU time (time.thread_time, so that other processes' time slices on a shared machine do not count) to
produce every increment of an S-step grid (set-up included) divided by S, the kinds interleaved, medians of 15
repeats, one thread. Memory: the heap bytes in use (glibc's mallinfo2) that the noise object holds between steps,
most over the grid, after one warm-up run (first calls allocate once) — beside its block of steps (`block` × batch
× dim float32), which is what it is designed to hold.

Checked (exit 1 when one fails): per-sample noise holds no more than its block of steps (+ 64 KiB), not the grid's
noise; and at full size, it costs at most RANDN_FACTOR × torch.randn per step and less than the dyadic path
wherever both are timed.

    OMP_NUM_THREADS=1 python -m benchmarks.per_sample_noise   (timings on a shared machine are noisy: say so)
    python -m benchmarks.per_sample_noise --smoke           (two small cases, three repeats, one memory case)
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from diffsolve import VPSDE, grids, problems
from diffsolve.solvers.brownian import brownian_path, grid_taus, per_sample_noise

from .common import Claims, out_path, smoke_argument, write

CASES = [(16, 2, 10), (16, 64, 10), (16, 64, 100), (256, 64, 100), (16, 3072, 50), (1024, 2, 100)]
MEMORY_CASES = [(64, 3072, 50), (256, 64, 100), (1024, 2, 100)]
RANDN_FACTOR = 10.0
SLACK_BYTES = 64 * 1024  # its keys and bookkeeping beside the block
MiB = 2**20


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


class MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (all fields size_t)."""

    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_reader() -> Callable[[], int] | None:
    """A function returning the heap bytes in use (allocated chunks + mmapped blocks), or None without glibc ≥ 2.33."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = MallInfo2

    def in_use() -> int:
        info = mallinfo2()
        return info.uordblks + info.hblkhd

    return in_use


def held(kind: str, batch: int, dim: int, steps: int, in_use: Callable[[], int]) -> dict[str, Any]:
    """The most heap bytes the noise object of `kind` holds between steps (after a warm-up run), and per-sample
    noise's block (steps it draws at once) with its bytes."""
    dyn, sched = dynamics()
    g = grids.build("logsnr", sched, steps)
    taus, x = grid_taus(dyn, g), torch.zeros(batch, dim)

    def make():
        return (per_sample_noise(dyn, g, x, list(range(batch))) if kind == "per-sample"
                else brownian_path(dyn, (batch, dim), x.dtype, "cpu", 0))

    for _ in range(2):  # the first run allocates what is allocated once; the second is measured
        gc.collect()
        base, most, path = in_use(), 0, make()
        for i in range(steps):
            path(taus[i], taus[i + 1])
            most = max(most, in_use() - base)
        del path
    block = per_sample_noise(dyn, g, x, list(range(batch))).block
    m = {"kind": kind, "batch": batch, "dim": dim, "steps": steps, "state_bytes": batch * dim * 4, "held": most,
         "block_steps": block, "block_bytes": block * batch * dim * 4}
    print(f"  {kind:10s} holds {most / MiB:8.3f} MiB = {most / m['state_bytes']:6.1f}x the state "
          f"({m['state_bytes'] / MiB:.3f} MiB); per-sample block: {block} step(s), {m['block_bytes'] / MiB:.3f} MiB",
          flush=True)
    return m


def timings(cases: list[tuple[int, int, int]], repeats: int) -> list[dict[str, Any]]:
    """Median µs per step of each kind for each (batch, dim, steps); the dyadic path only on the small cases."""
    rows = []
    for batch, dim, steps in cases:
        kinds = ["randn", "per-sample"] + (["dyadic"] if batch * dim * steps <= 16 * 64 * 100 else [])
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(repeats):
            for k in kinds:
                times[k].append(produce(k, batch, dim, steps))
        med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
        rows.append({"batch": batch, "dim": dim, "steps": steps, "us_per_step": med})
        print(f"batch {batch:5d} dim {dim:5d} steps {steps:4d}: "
              + ", ".join(f"{k} {v:8.1f} us/step" for k, v in med.items())
              + f"; per-sample/randn {med['per-sample'] / med['randn']:.2f}x"
              + (f", dyadic/randn {med['dyadic'] / med['randn']:.0f}x" if "dyadic" in med else ""), flush=True)
    return rows


def check(result: dict[str, Any], claims: Claims) -> None:
    """Per-sample noise: cheap per step, and memory of a block of steps (see the module's docstring)."""
    for r in result["timings"]:
        med, case = r["us_per_step"], f"batch {r['batch']} dim {r['dim']} steps {r['steps']}"
        ratio = med["per-sample"] / med["randn"]
        claims.check(ratio <= RANDN_FACTOR, f"{case}: per-sample noise {ratio:.2f}× torch.randn per step ≤ "
                                            f"{RANDN_FACTOR:g}×", full_size_only=True)
        if "dyadic" in med:
            claims.check(med["per-sample"] < med["dyadic"], f"{case}: per-sample noise {med['per-sample']:.1f} µs < "
                                                            f"the dyadic path's {med['dyadic']:.1f} µs per step",
                         full_size_only=True)
    for m in result["memory"]:
        if m["kind"] == "per-sample":
            bound = m["block_bytes"] + SLACK_BYTES
            claims.check(m["held"] <= bound, f"batch {m['batch']} dim {m['dim']} steps {m['steps']}: per-sample noise "
                                             f"holds {m['held'] / MiB:.3f} MiB ≤ its block of {m['block_steps']} "
                                             f"step(s) + 64 KiB ({bound / MiB:.3f} MiB; all steps: "
                                             f"{m['steps'] * m['state_bytes'] / MiB:.2f} MiB)")


def markdown(result: dict[str, Any]) -> str:
    lines = ["| batch | dim | steps | randn µs/step | per-sample µs/step | dyadic µs/step |",
             "|---|---|---|---|---|---|"]
    for r in result["timings"]:
        med = r["us_per_step"]
        dyadic = f"{med['dyadic']:.1f}" if "dyadic" in med else "—"
        lines.append(f"| {r['batch']} | {r['dim']} | {r['steps']} | {med['randn']:.1f} | {med['per-sample']:.1f} | "
                     f"{dyadic} |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", default=None, help="also write OUT.json (the measurements) and OUT.md (the table)")
    smoke_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(1)
    claims = Claims("per_sample_noise", args.smoke)
    cases, memory_cases = (CASES[:2], MEMORY_CASES[:1]) if args.smoke else (CASES, MEMORY_CASES)
    result: dict[str, Any] = {"timings": timings(cases, 3 if args.smoke else args.repeats), "memory": []}
    in_use = heap_reader()
    for batch, dim, steps in memory_cases if in_use else ():
        print(f"memory, batch {batch} dim {dim} steps {steps}:", flush=True)
        for kind in ("per-sample",) if args.smoke else ("per-sample", "dyadic"):
            result["memory"].append(held(kind, batch, dim, steps, in_use))
    if in_use is None:
        claims.skip("the memory per-sample noise holds", "glibc's mallinfo2 is not available here")
    check(result, claims)
    out = out_path(args, "per_sample_noise")
    if out:
        write(out, result, markdown)
    return claims.exit_status()


if __name__ == "__main__":
    sys.exit(main())
