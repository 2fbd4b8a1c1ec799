"""Fitted strong orders of the stochastic samplers beside theory, on problems whose drift is smooth.

Each solver's x(t_end) from exact samples of p_T is compared with an SRK solution on 2048 uniform-t
steps driven by the same Brownian path (seed 9); the order is minus the least-squares slope of log RMS
error on log steps. Problems (bench's GaussianMixture, exact ε): a 2-d Gaussian N(μ, 0.7² I) (the
reverse SDE is linear, Ornstein–Uhlenbeck-like) and a 1-d two-component mixture with stds 0.6 and 0.8
(non-linear drift).

Checked (exit 1 when one fails): every error is finite, and every fitted order lies within ORDER_TOL of the solver's
declared strong order — except SDE-DPM-Solver++(2M), whose deterministic part is second order: its fit may lie
anywhere from its order − ORDER_TOL up to 2 on these (pre-asymptotic) steps.

    python -m benchmarks.sde_orders [--out OUT]      (about a minute on one CPU core)
    python -m benchmarks.sde_orders --smoke          (one problem, fewer paths and steps, a coarser reference)
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import torch

import diffsolve as ds
from diffsolve.bench.metrics import fitted_order, rmse
from diffsolve.problems import GaussianMixture

from .common import Claims, output_arguments, report, smoke_argument, smoke_sizes

PROBLEMS = {
    "gaussian-2d": GaussianMixture(torch.ones(1), torch.tensor([[0.5, -0.3]]), torch.full((1, 2), 0.7)),
    "mixture-1d": GaussianMixture(torch.tensor([0.4, 0.6]), torch.tensor([[-0.6], [0.8]]),
                                  torch.tensor([[0.6], [0.8]])),
}
RUNS = [("euler_maruyama", "time", [16, 32, 64, 128]), ("euler_maruyama", "logsnr", [16, 32, 64, 128]),
        ("srk", "time", [8, 16, 32, 64]), ("ddpm", "logsnr", [16, 32, 64, 128]),
        ("sde_dpmpp2m", "logsnr", [16, 32, 64, 128])]
ORDER_TOL = 0.2
UPPER = {"sde_dpmpp2m": 2.0}  # a fitted order up to this is expected (a second-order deterministic part)


def measure(problems: list[str], paths: int, ref_steps: int, levels: int) -> list[dict[str, Any]]:
    """One row per (problem, solver, grid): steps (the first `levels` of each run's), strong RMS errors, fitted
    order, declared order."""
    sched = ds.VPLinear()
    rows = []
    for name in problems:
        prob = PROBLEMS[name]
        sde = ds.VPSDE(sched).reverse(prob.model(sched))
        x = prob.x_T(paths, 0, sched)
        ref = ds.solve(sde, x, ds.grids.time(sched, ref_steps), "srk", seed=9).x
        for solver, grid, all_steps in RUNS:
            steps = all_steps[:levels]
            errs = [rmse(ds.solve(sde, x, ds.grids.make(grid, sched, n), solver, seed=9).x, ref) for n in steps]
            finite = all(math.isfinite(e) for e in errs)
            order = fitted_order(steps, errs, last=None)[0] if finite else None
            rows.append({"problem": name, "solver": solver, "grid": grid, "steps": steps, "errors": errs,
                         "order": order, "theory": ds.get_solver(solver).order})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| problem | solver / grid | steps | strong error (RMS) | fitted order | theory |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        order = "—" if r["order"] is None else f"{r['order']:.2f}"
        lines.append(f"| {r['problem']} | {r['solver']} / {r['grid']} | {r['steps'][0]}–{r['steps'][-1]} | "
                     f"{' → '.join(f'{e:.2e}' for e in r['errors'])} | {order} | {r['theory']:g} |")
    return "\n".join(lines)


def check(rows: list[dict[str, Any]], claims: Claims) -> None:
    """Finite errors; fitted orders within their bounds (see the module's docstring)."""
    for r in rows:
        where = f"{r['problem']} {r['solver']} / {r['grid']}"
        if not claims.check(r["order"] is not None, f"{where}: every strong error is finite ({r['errors']})"):
            continue
        low, high = r["theory"] - ORDER_TOL, UPPER.get(r["solver"], r["theory"] + ORDER_TOL)
        claims.check(low <= r["order"] <= high, f"{where}: fitted order {r['order']:.2f} in [{low:g}, {high:g}] "
                                                f"(theory {r['theory']:g})", full_size_only=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", type=lambda s: s.split(","), default=list(PROBLEMS), help=", ".join(PROBLEMS))
    p.add_argument("--paths", type=int, default=300, help="Brownian paths (samples) per problem")
    p.add_argument("--levels", type=int, default=4, help="step counts per run (the first LEVELS of 4)")
    p.add_argument("--ref-steps", type=int, default=2048, help="uniform-t SRK steps of the reference")
    output_arguments(p)
    smoke_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    smoke_sizes(args, problems=["gaussian-2d"], paths=16, ref_steps=256, levels=3)
    torch.set_num_threads(1)
    return report(args, Claims("sde_orders", args.smoke),
                  lambda out: measure(args.problems, args.paths, args.ref_steps, args.levels), markdown, check)


if __name__ == "__main__":
    sys.exit(main())
