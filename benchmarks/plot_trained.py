"""Pictures of the shipped trained networks: toy-2d samples and PF-ODE paths, digits-8x8 sample grids.

Checked (exit 1 when one fails): both figures are non-empty PNGs; every sample is finite; the network's reference
samples of toy-2d lie on the ring (mean radius within 0.15 of 1.5); and at NFE 10 every solver shown is within RMSE
MAX_RMSE_NFE10 of the reference (toy-2d and digits-8x8; measured 0.06–0.16).

Run from the repository root:
    OMP_NUM_THREADS=1 python -m benchmarks.plot_trained [--out DIR]
writes DIR/toy2d.png and DIR/digits.png (default DIR: benchmarks/results/trained);
    python -m benchmarks.plot_trained --smoke          (fewer samples and paths, a temporary folder)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import diffsolve as ds  # noqa: E402
from diffsolve import nets, problems  # noqa: E402

from .common import RESULTS, Claims, check_png, out_path, smoke_argument  # noqa: E402

RING_RADIUS, RING_TOL = 1.5, 0.15
MAX_RMSE_NFE10 = 0.3
NFE = 10
SOLVERS = [("euler", "sigma", "tab:blue"), ("heun", "t", "tab:green"), ("dpmpp2m", "lambda", "tab:red")]
REF_TOL = 1e-8


def _solve(model: ds.Model, x_T: torch.Tensor, name: str, variable: str, nfe: int,
           trajectory: bool = False) -> ds.Solution:
    solver = ds.get_solver(name)
    grid = ds.grids.logsnr(model.schedule, solver.steps_for(nfe))
    return ds.solve(ds.ode(model, variable), x_T, grid, solver, trajectory=trajectory)


@dataclass
class Sizes:
    """How much each picture draws: toy-2d samples, paths and density grid, digits, the reference's tolerance and
    solver."""

    samples: int = 2000
    paths: int = 24
    grid: int = 300
    digits: int = 12
    tol: float = REF_TOL
    solver: str = "dopri8"


SMOKE = Sizes(samples=200, paths=6, grid=60, digits=4, tol=1e-4, solver="dopri5")


def _reference(model: ds.Model, x_T: torch.Tensor, sizes: Sizes, points: int = 1) -> ds.Solution:
    """The adaptive solver at rtol = atol = tol (float64), reported at `points` logSNR grid times."""
    grid = ds.grids.logsnr(model.schedule, points)
    return ds.solve(ds.ode(model, "lambda"), x_T, grid, sizes.solver, trajectory=points > 1, rtol=sizes.tol,
                    atol=sizes.tol)


def rmse(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Root mean square of x − ref over every entry."""
    return float(((x - ref) ** 2).mean().sqrt())


def toy_density(ax: Any, sched: Any, ref: ds.Solution, samples: int, grid: int) -> None:
    """The ring's true log-density at t_end, data points and the network's reference samples."""
    lim = (-2.4, 2.4)
    u = torch.linspace(*lim, grid, dtype=torch.float64)
    xx, yy = torch.meshgrid(u, u, indexing="ij")
    a, s = float(sched.alpha(sched.t_min)), float(sched.sigma(sched.t_min))
    logp = nets.toy_2d_logp(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), a, s).reshape(grid, grid)
    data = nets.toy_2d(samples, 123)
    ax.contour(xx, yy, logp.clamp(min=-12), levels=15, linewidths=0.5, cmap="viridis")
    ax.scatter(data[:, 0], data[:, 1], s=1, color="k", alpha=0.35, label=f"data ({samples})")
    ax.scatter(ref.x[:, 0], ref.x[:, 1], s=1, color="tab:orange", alpha=0.5,
               label=f"network, reference solve ({ref.nfe} NFE)")
    ax.set_title("toy-2d: true log-density, data and network samples")


def toy_paths(ax: Any, prob: Any, model: ds.Model, sizes: Sizes, stats: dict[str, Any]) -> None:
    """PF-ODE paths from a few x_T: the reference against each solver at NFE 10."""
    x_paths = prob.x_T(sizes.paths, seed=1)
    path = _reference(model, x_paths, sizes, points=200).trajectory
    for i in range(x_paths.shape[0]):
        ax.plot(path[:, i, 0], path[:, i, 1], color="k", linewidth=0.8,
                label=f"reference ({sizes.solver}, {sizes.tol:g})" if i == 0 else None)
    for name, variable, colour in SOLVERS:
        traj = _solve(model, x_paths, name, variable, NFE, trajectory=True)
        stats["finite"].append(bool(torch.isfinite(traj.trajectory).all()))
        for i in range(x_paths.shape[0]):
            ax.plot(traj.trajectory[:, i, 0], traj.trajectory[:, i, 1], color=colour, linewidth=0.8, marker=".",
                    markersize=3, label=f"{name} in {variable}, NFE {traj.nfe}" if i == 0 else None)
    ax.set_title(f"PF-ODE paths from {sizes.paths} x_T (logSNR grid), NFE {NFE}")


def toy(out: Path, sizes: Sizes, stats: dict[str, Any]) -> None:
    """out/toy2d.png: density and samples, paths, end points at NFE 10 with their RMSE to the reference."""
    prob = problems.get("toy-2d")
    model, sched = prob.model(), prob.default_schedule()
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.3))
    samples = sizes.samples
    x_T = prob.x_T(samples, seed=2)
    ref = _reference(model, x_T, sizes)
    stats["finite"].append(bool(torch.isfinite(ref.x).all()))
    stats["ring_radius"] = float(ref.x.norm(dim=1).mean())
    toy_density(axes[0], sched, ref, samples, sizes.grid)
    toy_paths(axes[1], prob, model, sizes, stats)
    ax = axes[2]
    ax.scatter(ref.x[:, 0], ref.x[:, 1], s=1, color="k", alpha=0.3, label="reference")
    for name, variable, colour in SOLVERS:
        sol = _solve(model, x_T, name, variable, NFE)
        stats["rmse"][f"toy-2d {name} in {variable}, NFE {sol.nfe}"] = rmse(sol.x, ref.x)
        ax.scatter(sol.x[:, 0], sol.x[:, 1], s=1, color=colour, alpha=0.4,
                   label=f"{name} in {variable}, NFE {sol.nfe}: RMSE {rmse(sol.x, ref.x):.3g}")
    ax.set_title(f"{samples} samples at NFE {NFE} against the reference")
    for ax in axes:
        ax.set_xlim(-2.4, 2.4)
        ax.set_ylim(-2.4, 2.4)
        ax.set_aspect("equal")
        ax.legend(loc="lower left", fontsize=7, markerscale=4)
    fig.tight_layout()
    fig.savefig(out / "toy2d.png", dpi=110)
    plt.close(fig)


def digits(out: Path, sizes: Sizes, stats: dict[str, Any]) -> None:
    """out/digits.png: held-out digits, the reference and each solver at NFE 5 and 10 from the same x_T."""
    count = sizes.digits
    prob = problems.get("digits-8x8")
    model = prob.model()
    x_T = prob.x_T(count, seed=3)
    rows = [("held-out data", nets.dequantize(nets.digits_levels("test")[:count].double(),
                                                torch.Generator().manual_seed(0)).reshape(count, -1))]
    ref = _reference(model, x_T, sizes)
    rows.append((f"reference ({sizes.solver} {sizes.tol:g}, {ref.nfe} NFE)", ref.x))
    for nfe in (5, 10):
        for name, variable, _ in SOLVERS:
            sol = _solve(model, x_T, name, variable, nfe)
            if nfe == NFE:
                stats["rmse"][f"digits-8x8 {name} in {variable}, NFE {sol.nfe}"] = rmse(sol.x, ref.x)
            rows.append((f"{name} in {variable}, NFE {sol.nfe}: RMSE {rmse(sol.x, ref.x):.3f}", sol.x))
    stats["finite"] += [bool(torch.isfinite(xs).all()) for _, xs in rows]
    fig, axes = plt.subplots(len(rows), count, figsize=(count, 1.1 * len(rows)))
    for r, (label, xs) in enumerate(rows):
        for c in range(count):
            ax = axes[r, c]
            ax.imshow(xs[c].reshape(8, 8).clamp(-1, 1), cmap="gray_r", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"digits-8x8: the same {count} x_T solved by each method (row 1: real held-out digits)")
    fig.tight_layout()
    fig.savefig(out / "digits.png", dpi=100)
    plt.close(fig)


def check(stats: dict[str, Any], out: Path, claims: Claims) -> None:
    """The claims of the module's docstring."""
    for name in ("toy2d.png", "digits.png"):
        check_png(out / name, claims)
    claims.check(all(stats["finite"]), f"every sample and path is finite ({len(stats['finite'])} sets)")
    r = stats["ring_radius"]
    claims.check(abs(r - RING_RADIUS) <= RING_TOL, f"toy-2d: the network's reference samples have mean radius "
                                                   f"{r:.3f}, within {RING_TOL:g} of the ring's {RING_RADIUS:g}")
    for label, e in stats["rmse"].items():
        claims.check(e <= MAX_RMSE_NFE10, f"{label}: RMSE to the reference {e:.3g} ≤ {MAX_RMSE_NFE10:g}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help=f"folder for toy2d.png and digits.png (default {RESULTS / 'trained'})")
    smoke_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    claims = Claims("plot_trained", args.smoke)
    torch.set_num_threads(1)
    out = out_path(args, "plot_trained", RESULTS / "trained")
    out.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {"finite": [], "rmse": {}}
    sizes = SMOKE if args.smoke else Sizes()
    toy(out, sizes, stats)
    digits(out, sizes, stats)
    print(f"wrote {out}/toy2d.png, {out}/digits.png")
    check(stats, out, claims)
    return claims.exit_status()


if __name__ == "__main__":
    sys.exit(main())
