"""Pictures of gmm-2d: the exact density and samples, reference paths against solver paths at low NFE.

Checked (exit 1 when one fails): the figure is a non-empty PNG; every sample and path is finite; the exact samples'
mean is the mixture's (within 4 standard errors); and what the right panel shows: Euler in λ sends every sample to
one point (per-coordinate std < 1e-3), while Euler in σ̄ and Heun in t keep at least half the exact samples'
spread.

Run from the repository root:
    OMP_NUM_THREADS=1 python -m benchmarks.plot_gmm2d [--out DIR]     (writes DIR/gmm2d.png; default benchmarks/results)
    python -m benchmarks.plot_gmm2d --smoke                           (fewer samples and paths, a temporary folder)
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import diffsolve as ds  # noqa: E402
from diffsolve import problems  # noqa: E402

from .common import RESULTS, Claims, check_png, out_path, smoke_argument  # noqa: E402

SOLVERS = [("euler", "sigma", "tab:blue"), ("euler", "lambda", "tab:red"), ("heun", "t", "tab:green")]
NFE = 10
COLLAPSED = 1e-3  # a sample set whose per-coordinate std is below this sits at one point


def density_panel(ax: Any, gm: Any, sched: Any, exact: torch.Tensor, lim: tuple[float, float], grid: int) -> None:
    u = torch.linspace(*lim, grid, dtype=torch.float64)
    xx, yy = torch.meshgrid(u, u, indexing="ij")
    logp = gm.log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), sched.t_min, sched).reshape(grid, grid)
    ax.contour(xx, yy, logp.clamp(min=-12), levels=20, linewidths=0.5, cmap="viridis")
    ax.scatter(exact[:, 0], exact[:, 1], s=1, color="k", alpha=0.4)
    ax.set_title(f"gmm-2d: log p at t_end = {sched.t_min} and {exact.shape[0]} exact samples")


def paths_panel(ax: Any, gm: Any, sched: Any, paths: int, stats: dict[str, Any]) -> None:
    x_T = gm.x_T(paths, 1, sched)
    ref = gm.reference_path(x_T, sched, ds.grids.logsnr(sched, 200).t)
    stats["finite"]["reference paths"] = bool(torch.isfinite(ref).all())
    for i in range(x_T.shape[0]):
        ax.plot(ref[:, i, 0], ref[:, i, 1], color="k", linewidth=0.8,
                label="reference (dopri8, 1e-10)" if i == 0 else None)
    for name, variable, colour in SOLVERS:
        solver = ds.get_solver(name)
        sol = ds.solve(ds.ode(gm.model(sched), variable), x_T, ds.grids.logsnr(sched, solver.steps_for(NFE)), solver,
                       trajectory=True)
        stats["finite"][f"{name} in {variable} paths"] = bool(torch.isfinite(sol.trajectory).all())
        for i in range(x_T.shape[0]):
            ax.plot(sol.trajectory[:, i, 0], sol.trajectory[:, i, 1], color=colour, linewidth=0.8, marker=".",
                    markersize=3, label=f"{name} in {variable}, NFE {sol.nfe}" if i == 0 else None)
    ax.set_title(f"paths from {paths} x_T (logSNR grid), NFE {NFE}")


def ends_panel(ax: Any, gm: Any, sched: Any, exact: torch.Tensor, stats: dict[str, Any]) -> None:
    x_T = gm.x_T(exact.shape[0], 2, sched)
    ax.scatter(exact[:, 0], exact[:, 1], s=1, color="k", alpha=0.3, label="exact")
    for name, variable, colour in SOLVERS:
        sol = ds.sample(gm.model(sched), x_T, solver=name, nfe=NFE, grid="logsnr", variable=variable)
        spread = float(sol.x.std(0).max())
        stats["finite"][f"{name} in {variable} end points"] = bool(torch.isfinite(sol.x).all())
        stats["spread"][f"{name} in {variable}"] = spread
        big = spread < COLLAPSED  # a collapsed sample set: draw it so that it shows
        ax.scatter(sol.x[:, 0], sol.x[:, 1], s=80 if big else 1, marker="x" if big else "o", color=colour,
                   alpha=1.0 if big else 0.5, zorder=5 if big else 2,
                   label=f"{name} in {variable}" + (f" (all at one point, std {spread:.0e})" if big else ""))
    ax.set_title(f"end points of {exact.shape[0]} x_T, NFE {NFE}")


def plot(out: Path, samples: int, paths: int, grid: int) -> dict[str, Any]:
    """Draw the three panels into out/gmm2d.png; return what the checks read."""
    torch.set_num_threads(1)
    gm, sched = problems.get("gmm-2d"), ds.VPLinear()
    exact = gm.samples(samples, 0, sched, sched.t_min)
    stats: dict[str, Any] = {"finite": {"exact samples": bool(torch.isfinite(exact).all())}, "spread": {},
                             "exact_spread": float(exact.std(0).max()), "exact": exact}
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    lim = (-2.5, 2.5)
    density_panel(axes[0], gm, sched, exact, lim, grid)
    paths_panel(axes[1], gm, sched, paths, stats)
    ends_panel(axes[2], gm, sched, exact, stats)
    for ax in axes:
        ax.set_xlim(*lim)
        ax.set_ylim(*lim)
        ax.set_aspect("equal")
    axes[1].legend(fontsize=7, loc="lower left")
    axes[2].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "gmm2d.png", dpi=110)
    plt.close(fig)
    stats["mixture_mean"] = (gm.weights[:, None] * gm.means).sum(0)
    print(f"wrote {out / 'gmm2d.png'}")
    return stats


def check(stats: dict[str, Any], png: Path, claims: Claims) -> None:
    check_png(png, claims)
    bad = [k for k, ok in stats["finite"].items() if not ok]
    claims.check(not bad, f"every sample and path is finite ({len(stats['finite'])} sets)"
                 + (f"; not: {', '.join(bad)}" if bad else ""))
    exact = stats["exact"]
    gap = float(((exact.mean(0) - stats["mixture_mean"]).abs() / (exact.std(0) / math.sqrt(exact.shape[0]))).max())
    claims.check(gap <= 4, f"the exact samples' mean is the mixture's within {gap:.1f} ≤ 4 standard errors")
    for label, spread in stats["spread"].items():
        if label == "euler in lambda":
            claims.check(spread < COLLAPSED, f"{label} at NFE {NFE}: every sample at one point (std {spread:.1e})")
        else:
            claims.check(spread >= stats["exact_spread"] / 2, f"{label} at NFE {NFE}: spread {spread:.3f} ≥ half the "
                                                              f"exact samples' {stats['exact_spread']:.3f}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help=f"folder for gmm2d.png (default {RESULTS})")
    smoke_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    claims = Claims("plot_gmm2d", args.smoke)
    out = out_path(args, "plot_gmm2d", RESULTS)
    stats = plot(out, *((300, 6, 60) if args.smoke else (2000, 24, 300)))
    check(stats, out / "gmm2d.png", claims)
    return claims.exit_status()


if __name__ == "__main__":
    sys.exit(main())
