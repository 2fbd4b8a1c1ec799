"""Pictures of the shipped trained networks: toy-2d samples and PF-ODE paths, digits-8x8 sample grids.

Run (from any directory):
    OMP_NUM_THREADS=1 python benchmarks/plot_trained.py [OUT_DIR]
writes OUT_DIR/toy2d.png and OUT_DIR/digits.png (default OUT_DIR: benchmarks/results/trained beside this script).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's diffsolve, from any directory

import diffsolve as ds  # noqa: E402
from diffsolve import nets, problems  # noqa: E402

NFE = 10
SOLVERS = [("euler", "sigma", "tab:blue"), ("heun", "t", "tab:green"), ("dpmpp2m", "lambda", "tab:red")]
REF_TOL = 1e-8


def _solve(model: ds.Model, x_T: torch.Tensor, name: str, variable: str, nfe: int,
           trajectory: bool = False) -> ds.Solution:
    solver = ds.get_solver(name)
    grid = ds.grids.logsnr(model.schedule, solver.steps_for(nfe))
    return ds.solve(ds.ode(model, variable), x_T, grid, solver, trajectory=trajectory)


def _reference(model: ds.Model, x_T: torch.Tensor, points: int = 1) -> ds.Solution:
    """dopri8 at rtol = atol = 1e-8 (float64), reported at `points` logSNR grid times."""
    grid = ds.grids.logsnr(model.schedule, points)
    return ds.solve(ds.ode(model, "lambda"), x_T, grid, "dopri8", trajectory=points > 1, rtol=REF_TOL, atol=REF_TOL)


def toy(out: Path) -> None:
    prob = problems.get("toy-2d")
    model, sched = prob.model(), prob.default_schedule()
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.3))
    lim = (-2.4, 2.4)
    u = torch.linspace(*lim, 300, dtype=torch.float64)
    xx, yy = torch.meshgrid(u, u, indexing="ij")
    a, s = float(sched.alpha(sched.t_min)), float(sched.sigma(sched.t_min))
    logp = nets.toy_2d_logp(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), a, s).reshape(300, 300)
    data = nets.toy_2d(2000, 123)
    x_T = prob.x_T(2000, seed=2)
    ref = _reference(model, x_T)

    ax = axes[0]
    ax.contour(xx, yy, logp.clamp(min=-12), levels=15, linewidths=0.5, cmap="viridis")
    ax.scatter(data[:, 0], data[:, 1], s=1, color="k", alpha=0.35, label="data (2000)")
    ax.scatter(ref.x[:, 0], ref.x[:, 1], s=1, color="tab:orange", alpha=0.5,
               label=f"network, reference solve ({ref.nfe} NFE)")
    ax.set_title("toy-2d: true log-density, data and network samples")

    ax = axes[1]
    x_paths = prob.x_T(24, seed=1)
    path = _reference(model, x_paths, points=200).trajectory
    for i in range(x_paths.shape[0]):
        ax.plot(path[:, i, 0], path[:, i, 1], color="k", linewidth=0.8,
                label=f"reference (dopri8, {REF_TOL:g})" if i == 0 else None)
    for name, variable, colour in SOLVERS:
        traj = _solve(model, x_paths, name, variable, NFE, trajectory=True)
        for i in range(x_paths.shape[0]):
            ax.plot(traj.trajectory[:, i, 0], traj.trajectory[:, i, 1], color=colour, linewidth=0.8, marker=".",
                    markersize=3, label=f"{name} in {variable}, NFE {traj.nfe}" if i == 0 else None)
    ax.set_title(f"PF-ODE paths from 24 x_T (logSNR grid), NFE {NFE}")

    ax = axes[2]
    ax.scatter(ref.x[:, 0], ref.x[:, 1], s=1, color="k", alpha=0.3, label="reference")
    for name, variable, colour in SOLVERS:
        sol = _solve(model, x_T, name, variable, NFE)
        rmse = float(((sol.x - ref.x) ** 2).mean().sqrt())
        ax.scatter(sol.x[:, 0], sol.x[:, 1], s=1, color=colour, alpha=0.4,
                   label=f"{name} in {variable}, NFE {sol.nfe}: RMSE {rmse:.3g}")
    ax.set_title(f"2000 samples at NFE {NFE} against the reference")
    for ax in axes:
        ax.set_xlim(*lim)
        ax.set_ylim(*lim)
        ax.set_aspect("equal")
        ax.legend(loc="lower left", fontsize=7, markerscale=4)
    fig.tight_layout()
    fig.savefig(out / "toy2d.png", dpi=110)
    plt.close(fig)


def digits(out: Path) -> None:
    prob = problems.get("digits-8x8")
    model = prob.model()
    x_T = prob.x_T(12, seed=3)
    rows = [("held-out data", nets.dequantize(nets.digits_levels("test")[:12].double(),
                                                torch.Generator().manual_seed(0)).reshape(12, -1))]
    ref = _reference(model, x_T)
    rows.append((f"reference (dopri8 {REF_TOL:g}, {ref.nfe} NFE)", ref.x))
    for nfe in (5, 10):
        for name, variable, _ in SOLVERS:
            sol = _solve(model, x_T, name, variable, nfe)
            rmse = float(((sol.x - ref.x) ** 2).mean().sqrt())
            rows.append((f"{name} in {variable}, NFE {sol.nfe}: RMSE {rmse:.3f}", sol.x))
    fig, axes = plt.subplots(len(rows), 12, figsize=(12, 1.1 * len(rows)))
    for r, (label, xs) in enumerate(rows):
        for c in range(12):
            ax = axes[r, c]
            ax.imshow(xs[c].reshape(8, 8).clamp(-1, 1), cmap="gray_r", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("digits-8x8: the same 12 x_T solved by each method (row 1: real held-out digits)")
    fig.tight_layout()
    fig.savefig(out / "digits.png", dpi=100)
    plt.close(fig)


def main(out_dir: str = str(Path(__file__).resolve().parent / "results" / "trained")) -> None:
    torch.set_num_threads(1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    toy(out)
    digits(out)
    print(f"wrote {out}/toy2d.png, {out}/digits.png")


if __name__ == "__main__":
    main(*sys.argv[1:])
