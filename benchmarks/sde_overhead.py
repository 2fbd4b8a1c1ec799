"""Per-step overhead of the SDE solvers with a trivial model (ε = 0·x), median of repeats.

Compares, on the same seeded Brownian path: torchsde.sdeint called once per grid interval (the old
path), our loop over torchsde's `step`, a hand-written Euler–Maruyama loop on the same path's
increments, the path's increments alone, and DDPM; the increments of the cheaper grid-following
path (`grid_path`, weak errors only); and a plain torch.randn noise loop (no path) as a floor.

Checked (exit 1 when one fails): euler_maruyama, srk and ddpm spend the NFE they declare for the grid's steps and
return finite samples; and, at full size, the dyadic path dominates: its increments alone cost ≥ half the per-step
time of each of those solvers, and grid_path's increments cost less than the dyadic path's.

    python -m benchmarks.sde_overhead [--device cuda] [--steps 100] [--out OUT]
    python -m benchmarks.sde_overhead --smoke          (10 steps, one small state, one repeat)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import torch
import torchsde

import diffsolve as ds
from diffsolve.bench.timing import interleaved_medians
from diffsolve.solvers.brownian import brownian_path, grid_path, grid_taus

from .common import Claims, out_path, smoke_argument, smoke_sizes, write

COLUMNS = ("sdeint per interval", "torchsde step loop (euler_maruyama)", "srk", "hand EM on path",
           "path increments only", "ddpm", "grid_path increments only", "randn-noise EM (no path)")
SOLVERS = ("euler_maruyama", "srk", "ddpm")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shapes", default="64x2,1024x64")
    ap.add_argument("--out", default=None, help="also write OUT.json (the rows) and OUT.md (the table)")
    smoke_argument(ap)
    return ap


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| state | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {r['state']} | " + " | ".join(f"{r[c]:.3f}" for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def check_solvers(dyn: ds.Dynamics, grid: ds.grids.Grid, device: torch.device, claims: Claims) -> None:
    """Each stochastic solver spends the NFE it declares for the grid's steps and returns a finite sample."""
    x = torch.randn(4, 2, device=device, generator=torch.Generator(device).manual_seed(0))
    for name in SOLVERS:
        sol = ds.solve(dyn, x, grid, name, seed=0)
        want = ds.get_solver(name).nfe_for(grid.steps)
        claims.check(sol.nfe == want and bool(torch.isfinite(sol.x).all()),
                     f"{name}: {sol.nfe} NFE on {grid.steps} steps (declared {want}), finite sample")


def check_timings(row: dict[str, Any], claims: Claims) -> None:
    """The dyadic path dominates the solvers' cost; grid_path's increments are cheaper than it."""
    path = row["path increments only"]
    for col in ("torchsde step loop (euler_maruyama)", "srk", "ddpm"):
        claims.check(path >= 0.5 * row[col], f"{row['state']}: path increments {path:.3f} ms ≥ half of {col}'s "
                                             f"{row[col]:.3f} ms per step", full_size_only=True)
    grid = row["grid_path increments only"]
    claims.check(grid < path, f"{row['state']}: grid_path increments {grid:.3f} ms < the dyadic path's {path:.3f} ms",
                 full_size_only=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    smoke_sizes(args, steps=10, repeats=1, shapes="8x2")
    claims = Claims("sde_overhead", args.smoke)
    torch.set_num_threads(1)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sched = ds.VPLinear()
    model = ds.EpsModel(lambda x, t: x * 0.0, sched)
    dyn = ds.VPSDE(sched).reverse(model)
    grid = ds.grids.logsnr(sched, args.steps)
    check_solvers(dyn, grid, device, claims)
    print(f"device={device} steps={args.steps} repeats={args.repeats} (ms per step, median)")
    rows = []
    for shape_s in args.shapes.split(","):
        b, d = (int(v) for v in shape_s.split("x"))
        rows.append({"state": f"{b}x{d}", **dict(zip(COLUMNS, measure(dyn, grid, b, d, device, args.steps,
                                                                         args.repeats, sync)))})
    print(markdown(rows))
    for row in rows:
        check_timings(row, claims)
    out = out_path(args, "sde_overhead")
    if out:
        write(out, rows, markdown)
    return claims.exit_status()


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
    sys.exit(main())
