"""Learned solvers against the tuned grids they start from, on held-out draws (issue 24's targets).

For each problem and solver family, at each NFE: `tune` (the tuned grid, its cost) and `learn` (the same search, then
the weights stage; validation draws choose between the learned solver and the tuned grid), both with the tuner's
defaults (n = 256 training draws of seed 10, validation seed 7929, a fresh teacher cache each, so every cost includes
its teacher). Reported on held-out draws of seed 1 (n --n-eval; neither trained nor chosen on) against the float64
reference: relative RMSE ‖x − ref‖/‖ref‖, the per-draw relative error's median and 90th percentile, and the draws
that end in another mode (per-draw error > 0.5). Cost in sample-evaluations (forward), backward ones beside.

Claims (full size): learned median ≤ 0.5× the tuned grid's, relative RMSE ≤ 0.7×, never worse (RMSE ≤ 1×), and the
learning's forward cost ≤ 2× the tuning's. They are printed per cell; the summary counts the cells that hold.

    OMP_NUM_THREADS=1 python -m benchmarks.learned [--out benchmarks/results/learned]
    python -m benchmarks.learned --problem gmm-2d --nfe 4,5 --config ipndm:order=3 --objective trimmed
    python -m benchmarks.learned --smoke
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from typing import Any

import torch

import diffsolve as ds
from diffsolve.solvers.exp.learned import LearnedMultistep
from diffsolve.tuning import tune
from diffsolve.tuning.settings import DEFAULTS as TUNE_DEFAULTS
from diffsolve.tuning.settings import LEARN_OBJECTIVE

from .common import Claims, output_arguments, report, smoke_argument, smoke_sizes
from .heldout import config, nfe_list
from .tuning_cost import heldout_sets, per_draw

F64 = torch.float64
PROBLEMS = ("gmm-64", "gmm-2d", "toy-2d", "digits-8x8")
CONFIGS = ("ipndm:order=3", "unipc:lower_order_final=1")
TARGETS = {"median": 0.5, "rmse": 0.7, "worse": 1.0, "cost": 2.0}
DEFAULT_OBJECTIVE = TUNE_DEFAULTS["objective"]  # tune's: then learning starts from tune's own grid


def timed(call: Any, *args: Any, **kw: Any) -> tuple[Any, float]:
    """call(…) with a fresh teacher cache (its cost included) and its CPU seconds."""
    with tempfile.TemporaryDirectory(prefix="diffsolve-teachers-") as cache:
        clock = time.process_time()
        out = call(*args, cache_dir=cache, progress=False, **kw)
        return out, time.process_time() - clock


def solved(model: Any, x: torch.Tensor, solver: Any, grid: Any, variable: str) -> torch.Tensor:
    """`solver` on `grid` from x, float64, in the ODE of `variable`."""
    return ds.solve(ds.ode(model, variable), x, grid, solver).x.to(F64)


def cell(args: argparse.Namespace, prob: Any, model: Any, heldout: tuple[torch.Tensor, torch.Tensor], text: str,
         nfe: int) -> dict[str, Any]:
    """One (problem, config, NFE): the tuned grid and the learned solver, each measured on the held-out draws."""
    solver, opts = config(text)
    kw = {**args.tune_kw, **opts}
    tg, tune_cpu = timed(tune, prob, solver, nfe, **kw)
    learned, learn_cpu = timed(ds.solvers.learn, prob, solver, nfe, objective=args.objective,
                               conditions=args.conditions, **kw)
    x, ref = heldout
    base = LearnedMultistep(solver, opts)
    tuned_m = per_draw(solved(model, x, base, tg.grid, learned.variable), ref)
    start_m = per_draw(solved(model, x, base, learned.tuned_grid, learned.variable), ref)
    learned_m = per_draw(solved(model, x, learned.solver, learned.grid, learned.variable), ref)
    same = bool(torch.equal(tg.grid.t, learned.tuned_grid.t))
    row = {"problem": prob.name, "config": text, "nfe": nfe, "objective": args.objective,
           "conditions": args.conditions, "chosen": learned.chosen, "tuned_stage": tg.chosen, "same_grid": same,
           "tuned": tuned_m, "start": start_m, "learned": learned_m,
           "tune_samples": tg.cost_samples, "tune_vjp": tg.cost_vjp_samples, "tune_cpu": round(tune_cpu, 2),
           "learn_samples": learned.cost["samples"], "learn_vjp": learned.cost["vjp_samples"],
           "learn_cpu": round(learn_cpu, 2), "validation": learned.errors["validation"],
           "tuned_validation": learned.errors["tuned"]["validation"], "times": learned.grid.t.tolist()}
    row["ratio"] = {k: learned_m[k] / tuned_m[k] if tuned_m[k] else math.nan for k in ("err", "median", "p90")}
    row["start_ratio"] = {k: learned_m[k] / start_m[k] if start_m[k] else math.nan for k in ("err", "median", "p90")}
    row["cost_ratio"] = row["learn_samples"] / row["tune_samples"]
    print(f"{prob.name} {text} NFE {nfe}: chose {learned.chosen}; RMSE {learned_m['err']:.3g} / tuned "
          f"{tuned_m['err']:.3g} = {row['ratio']['err']:.2f}, median {learned_m['median']:.3g} / "
          f"{tuned_m['median']:.3g} = {row['ratio']['median']:.2f}, flips {learned_m['flips']} / "
          f"{tuned_m['flips']}; RMSE / its start {row['start_ratio']['err']:.2f}; cost {row['cost_ratio']:.2f}× "
          f"({learn_cpu:.1f} s / {tune_cpu:.1f} s CPU)", flush=True)
    return row


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for name in args.problem:
        prob = ds.problems.get(name)
        model = prob.model(prob.default_schedule(), dtype=F64)
        (heldout,) = heldout_sets(prob, [(args.seed, args.n_eval if name != "digits-8x8" else args.n_eval_digits)])
        for text in args.config:
            rows += [cell(args, prob, model, heldout, text, nfe) for nfe in args.nfe]
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """One line per cell: the tuned grid's and the learned solver's held-out measures, their ratios and costs."""
    out = ["| problem | config | NFE | chosen | tuned: RMSE / median / p90 / flips | learned: RMSE / median / p90 / "
           "flips | learned / tuned: RMSE, median | cost fwd: learn / tune | CPU s: learn / tune |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t, m = r["tuned"], r["learned"]
        out.append(f"| {r['problem']} | {r['config']} | {r['nfe']} | {r['chosen']} | {t['err']:.3g} / "
                   f"{t['median']:.2g} / {t['p90']:.2g} / {t['flips']} | {m['err']:.3g} / {m['median']:.2g} / "
                   f"{m['p90']:.2g} / {m['flips']} | {r['ratio']['err']:.2f}, {r['ratio']['median']:.2f} | "
                   f"{r['learn_samples']:,} / {r['tune_samples']:,} = {r['cost_ratio']:.2f}× | "
                   f"{r['learn_cpu']:.1f} / {r['tune_cpu']:.1f} |")
    if rows:
        m = summary(rows)
        out.append(f"\nGeometric mean over {m['cells']} cells, learned / tuned: RMSE {m['err']:.3f}, median "
                   f"{m['median']:.3f}; median ≤ 0.5× in {m['median_ok']}, RMSE ≤ 0.7× in {m['rmse_ok']}, both in "
                   f"{m['both_ok']}; RMSE above its start in {m['worse']}. Weights' objective "
                   f"{rows[0]['objective']}, conditions {rows[0]['conditions']}.")
    return "\n".join(out)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Geometric means of learned / tuned (RMSE, median, p90) and the cells that meet each target."""
    def gmean(key: str) -> float:
        return math.exp(statistics.fmean(math.log(max(r["ratio"][key], 1e-300)) for r in rows))
    return {"cells": len(rows), "err": gmean("err"), "median": gmean("median"), "p90": gmean("p90"),
            "median_ok": sum(r["ratio"]["median"] <= TARGETS["median"] for r in rows),
            "rmse_ok": sum(r["ratio"]["err"] <= TARGETS["rmse"] for r in rows),
            "both_ok": sum(r["ratio"]["median"] <= TARGETS["median"] and r["ratio"]["err"] <= TARGETS["rmse"]
                           for r in rows),
            "worse": sum(r["start_ratio"]["err"] > TARGETS["worse"] for r in rows),
            "flips": sum(r["learned"]["flips"] for r in rows), "tuned_flips": sum(r["tuned"]["flips"] for r in rows),
            "cost": max(r["cost_ratio"] for r in rows)}


def objectives_table(runs: dict[str, list[dict[str, Any]]]) -> str:
    """One line per learning objective (the same cells): geometric means of learned / tuned and the targets met."""
    out = ["| weights' objective | cells | RMSE (geo. mean) | median | p90 | median ≤ 0.5× | RMSE ≤ 0.7× | both | "
           "worse than its start | flips: learned / tuned | max cost |", "|---" * 11 + "|"]
    for label, rows in runs.items():
        m = summary(rows)
        out.append(f"| {label} | {m['cells']} | {m['err']:.3f} | {m['median']:.3f} | {m['p90']:.3f} | "
                   f"{m['median_ok']} | {m['rmse_ok']} | {m['both_ok']} | {m['worse']} | {m['flips']} / "
                   f"{m['tuned_flips']} | {m['cost']:.2f}× |")
    return "\n".join(out)


def check(rows: list[dict[str, Any]], claims: Claims) -> None:
    """Issue 24's targets per cell (full size only), the learned solver starting from tune's own grid (always)."""
    for r in rows:
        where = f"{r['problem']} {r['config']} NFE {r['nfe']}"
        if r["objective"] == DEFAULT_OBJECTIVE:
            claims.check(r["same_grid"], f"{where}: learning starts from the grid tune finds (the same times)")
        claims.check(r["ratio"]["median"] <= TARGETS["median"], f"{where}: learned median / tuned "
                     f"{r['ratio']['median']:.2f} (≤ {TARGETS['median']})", True)
        claims.check(r["ratio"]["err"] <= TARGETS["rmse"], f"{where}: learned RMSE / tuned {r['ratio']['err']:.2f} "
                     f"(≤ {TARGETS['rmse']})", True)
        claims.check(r["start_ratio"]["err"] <= TARGETS["worse"], f"{where}: never worse than the tuned grid it "
                     f"starts from, RMSE ratio {r['start_ratio']['err']:.2f} (≤ {TARGETS['worse']})", True)
        claims.check(r["cost_ratio"] <= TARGETS["cost"], f"{where}: learning costs {r['cost_ratio']:.2f}× the tuning "
                     f"(≤ {TARGETS['cost']})", True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problem", type=lambda s: s.split(","), default=list(PROBLEMS))
    p.add_argument("--config", type=lambda s: s.split(","), default=list(CONFIGS),
                   help="solver families as 'solver:key=value:…'")
    p.add_argument("--nfe", type=nfe_list, default=[4, 5, 6, 8])
    p.add_argument("--objective", default=LEARN_OBJECTIVE, help="the learning objective (mean, trimmed, log; the "
                   "tuned grid it is compared with is tune's, with tune's own objective)")
    p.add_argument("--conditions", type=int, default=1, help="1: each step consistent; 2: also the first moment")
    p.add_argument("--n-eval", type=int, default=4096, help="held-out draws (seed --seed) of the toy problems")
    p.add_argument("--n-eval-digits", type=int, default=512, help="held-out draws of digits-8x8")
    p.add_argument("--seed", type=int, default=1, help="the held-out seed (tuning trains on 10, validates on 7929)")
    p.add_argument("--threads", type=int, default=1)
    output_arguments(p)
    smoke_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    args.tune_kw = {}
    smoke_sizes(args, problem=["gmm-2d"], config=["ipndm:order=3"], nfe=[4], n_eval=64,
                tune_kw={"n": 16, "candidates": 12, "batch_size": 8, "max_evals": 3})
    return report(args, Claims("learned", args.smoke), lambda out: measure(args), markdown, check)


if __name__ == "__main__":
    sys.exit(main())
