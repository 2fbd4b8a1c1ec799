"""Fitted strong orders of the stochastic samplers beside theory, on problems whose drift is smooth.

Each solver's x(t_end) from exact samples of p_T is compared with an SRK solution on 2048 uniform-t
steps driven by the same Brownian path (seed 9); the order is minus the least-squares slope of log RMS
error on log steps. Problems (bench's GaussianMixture, exact ε): a 2-d Gaussian N(μ, 0.7² I) (the
reverse SDE is linear, Ornstein–Uhlenbeck-like) and a 1-d two-component mixture with stds 0.6 and 0.8
(non-linear drift). Run: python benchmarks/sde_orders.py   (about a minute on one CPU core)
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import diffsolve as ds  # noqa: E402
from diffsolve.bench.metrics import fitted_order, rmse  # noqa: E402
from diffsolve.problems import GaussianMixture  # noqa: E402

PROBLEMS = {
    "gaussian-2d": GaussianMixture(torch.ones(1), torch.tensor([[0.5, -0.3]]), torch.full((1, 2), 0.7)),
    "mixture-1d": GaussianMixture(torch.tensor([0.4, 0.6]), torch.tensor([[-0.6], [0.8]]),
                                  torch.tensor([[0.6], [0.8]])),
}
RUNS = [("euler_maruyama", "time", [16, 32, 64, 128]), ("euler_maruyama", "logsnr", [16, 32, 64, 128]),
        ("srk", "time", [8, 16, 32, 64]), ("ddpm", "logsnr", [16, 32, 64, 128]),
        ("sde_dpmpp2m", "logsnr", [16, 32, 64, 128])]


def main() -> int:
    """Print the table; 1 when a solve gave a non-finite error (an order off theory is a measurement, flagged)."""
    torch.set_num_threads(1)
    broken = []
    sched = ds.VPLinear()
    print("| problem | solver / grid | steps | strong error (RMS) | fitted order | theory |")
    print("|---|---|---|---|---|---|")
    for name, prob in PROBLEMS.items():
        model = prob.model(sched)
        sde = ds.VPSDE(sched).reverse(model)
        x = prob.x_T(300, 0, sched)
        ref = ds.solve(sde, x, ds.grids.time(sched, 2048), "srk", seed=9).x
        for solver, grid, steps in RUNS:
            errs = [rmse(ds.solve(sde, x, ds.grids.make(grid, sched, n), solver, seed=9).x, ref) for n in steps]
            if not all(math.isfinite(e) for e in errs):
                broken.append(f"{name} {solver}/{grid}: {errs}")
                continue
            order, _ = fitted_order(steps, errs, last=None)
            theory = ds.get_solver(solver).order
            flag = "" if abs(order - theory) <= 0.3 else " (off by more than 0.3)"
            print(f"| {name} | {solver} / {grid} | {steps[0]}–{steps[-1]} | "
                  f"{' → '.join(f'{e:.2e}' for e in errs)} | {order:.2f}{flag} | {theory:g} |")


    for b in broken:
        print("FAILED (non-finite error):", b, file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
