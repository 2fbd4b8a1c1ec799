"""Pictures of gmm-2d: the exact density and samples, reference paths against solver paths at low NFE.

Run (from any directory): OMP_NUM_THREADS=1 python benchmarks/plot_gmm2d.py [OUT.png]
(default OUT: benchmarks/results/gmm2d.png beside this script).
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
from diffsolve import problems  # noqa: E402

SOLVERS = [("euler", "sigma", "tab:blue"), ("euler", "lambda", "tab:red"), ("heun", "t", "tab:green")]
NFE = 10


def main(out: str = str(Path(__file__).resolve().parent / "results" / "gmm2d.png")) -> None:
    torch.set_num_threads(1)
    gm, sched = problems.get("gmm-2d"), ds.VPLinear()
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    lim = (-2.5, 2.5)
    u = torch.linspace(*lim, 300, dtype=torch.float64)
    xx, yy = torch.meshgrid(u, u, indexing="ij")
    logp = gm.log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), sched.t_min, sched).reshape(300, 300)
    exact = gm.samples(2000, 0, sched, sched.t_min)

    ax = axes[0]
    ax.contour(xx, yy, logp.clamp(min=-12), levels=20, linewidths=0.5, cmap="viridis")
    ax.scatter(exact[:, 0], exact[:, 1], s=1, color="k", alpha=0.4)
    ax.set_title(f"gmm-2d: log p at t_end = {sched.t_min} and 2000 exact samples")

    x_T = gm.x_T(24, 1, sched)
    grid_t = ds.grids.logsnr(sched, 200).t
    ref = gm.reference_path(x_T, sched, grid_t)
    ax = axes[1]
    for i in range(x_T.shape[0]):
        ax.plot(ref[:, i, 0], ref[:, i, 1], color="k", linewidth=0.8,
                label="reference (dopri8, 1e-10)" if i == 0 else None)
    for name, variable, colour in SOLVERS:
        solver = ds.get_solver(name)
        sol = ds.solve(ds.ode(gm.model(sched), variable), x_T, ds.grids.logsnr(sched, solver.steps_for(NFE)), solver,
                       trajectory=True)
        for i in range(x_T.shape[0]):
            ax.plot(sol.trajectory[:, i, 0], sol.trajectory[:, i, 1], color=colour, linewidth=0.8, marker=".",
                    markersize=3, label=f"{name} in {variable}, NFE {sol.nfe}" if i == 0 else None)
    ax.set_title(f"paths from 24 x_T (logSNR grid), NFE {NFE}")

    ax = axes[2]
    x_T = gm.x_T(2000, 2, sched)
    ax.scatter(exact[:, 0], exact[:, 1], s=1, color="k", alpha=0.3, label="exact")
    for name, variable, colour in SOLVERS:
        sol = ds.sample(gm.model(sched), x_T, solver=name, nfe=NFE, grid="logsnr", variable=variable)
        spread = float(sol.x.std(0).max())
        big = spread < 1e-3  # a collapsed sample set: draw it so that it shows
        ax.scatter(sol.x[:, 0], sol.x[:, 1], s=80 if big else 1, marker="x" if big else "o", color=colour,
                   alpha=1.0 if big else 0.5, zorder=5 if big else 2,
                   label=f"{name} in {variable}" + (f" (all at one point, std {spread:.0e})" if big else ""))
    ax.set_title(f"end points of 2000 x_T, NFE {NFE}")
    for ax in axes:
        ax.set_xlim(*lim)
        ax.set_ylim(*lim)
        ax.set_aspect("equal")
    axes[1].legend(fontsize=7, loc="lower left")
    axes[2].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
