"""Per-step overhead of the SDE solvers with a trivial model (ε = 0·x), median of repeats.

Compares, on the same seeded Brownian path: torchsde.sdeint called once per grid interval (the old
path), our loop over torchsde's `step`, a hand-written Euler–Maruyama loop on the same path's
increments, the path's increments alone, and DDPM; the increments of the cheaper grid-following
path (`grid_path`, weak errors only); and a plain torch.randn noise loop (no path) as a floor.
Run: python benchmarks/sde_overhead.py [--device cuda] [--steps 100]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torchsde

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import diffsolve as ds  # noqa: E402
from diffsolve.bench.timing import interleaved_medians  # noqa: E402
from diffsolve.solvers.brownian import brownian_path, grid_path, grid_taus  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shapes", default="64x2,1024x64")
    args = ap.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sched = ds.VPLinear()
    model = ds.EpsModel(lambda x, t: x * 0.0, sched)
    dyn = ds.VPSDE(sched).reverse(model)
    grid = ds.grids.logsnr(sched, args.steps)
    print(f"device={device} steps={args.steps} repeats={args.repeats} (ms per step, median)")
    print("| state | sdeint per interval | torchsde step loop (euler_maruyama) | srk | hand EM on path "
          "| path increments only | ddpm | grid_path increments only | randn-noise EM (no path) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape_s in args.shapes.split(","):
        b, d = (int(v) for v in shape_s.split("x"))
        row = measure(dyn, grid, b, d, device, args.steps, args.repeats, sync)
        print(f"| {b}x{d} | " + " | ".join(f"{v:.3f}" for v in row) + " |")


def measure(dyn: ds.Dynamics, grid: ds.grids.Grid, b: int, d: int, device: torch.device, steps: int, repeats: int,
            sync: Callable[[], None]) -> list[float]:
    """ms per step of each variant for a (b, d) state."""
    sched = dyn.schedule
    taus = grid_taus(dyn, grid)
    pts = ds.make_points(sched, grid.t)
    x = torch.randn(b, d, device=device)

    class Adapter(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def f(self, tau, y):
            return -dyn.drift(y, ds.make_point(sched, -float(tau)))

        def g(self, tau, y):
            return dyn.diffusion(y, ds.make_point(sched, -float(tau)))

    def old() -> None:
        bm = brownian_path(dyn, (b, d), x.dtype, device, 0)
        y, sde = x, Adapter()
        for a, c in zip(taus[:-1], taus[1:]):
            y = torchsde.sdeint(sde, y, torch.tensor([a, c], dtype=torch.float64), bm=bm, method="euler",
                                dt=(c - a) * (1 + 1e-9))[-1]

    def hand_em() -> None:
        bm = brownian_path(dyn, (b, d), x.dtype, device, 0)
        y = x
        for i in range(len(taus) - 1):
            h = taus[i + 1] - taus[i]
            y = y.add(dyn.drift(y, pts[i]), alpha=-h).add_(bm(taus[i], taus[i + 1]), alpha=pts[i].beta ** 0.5)

    def increments() -> None:
        bm = brownian_path(dyn, (b, d), x.dtype, device, 0)
        for a, c in zip(taus[:-1], taus[1:]):
            bm(a, c)

    def grid_increments() -> None:
        bm = grid_path(dyn, grid, (b, d), x.dtype, device, 0)
        for a, c in zip(taus[:-1], taus[1:]):
            bm(a, c)

    def randn_em() -> None:
        y = x
        for i in range(len(taus) - 1):
            h = taus[i + 1] - taus[i]
            y = y.add(dyn.drift(y, pts[i]), alpha=-h).add_(torch.randn_like(y), alpha=(pts[i].beta * h) ** 0.5)

    variants = [old, lambda: ds.solve(dyn, x, grid, "euler_maruyama", seed=0),
                lambda: ds.solve(dyn, x, grid, "srk", seed=0), hand_em, increments,
                lambda: ds.solve(dyn, x, grid, "ddpm", seed=0), grid_increments, randn_em]
    return [1e3 * s / steps for s in interleaved_medians(variants, repeats, sync, warmup=0)]


if __name__ == "__main__":
    main()
