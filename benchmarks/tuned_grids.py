"""Best standard configuration vs best tuned grid per NFE, on held-out draws (benchmarks/RESULTS.md, "Tuned grids").

Standard side: every solver configuration in --standard on every standard grid (logsnr, time, quadratic,
karras), relative error ‖x − ref‖/‖ref‖ on the held-out draws (seed --heldout-seed, n --n-eval) against
the float64 reference; the best per NFE is reported. Tuned side: each configuration in --tuned is tuned
(diffsolve.tuning.tune, DP + L-BFGS-B) on the training draws (seed --train-seed, n --n-train) and
measured on the same held-out draws. Tuning cost: model evaluations, wall and CPU seconds per (solver, NFE).

Checked (exit 1 when one fails): every tuned grid is no worse on the held-out draws than the best standard grid of
its own solver configuration, and no worse on its training draws than the grid its refinement started from.
--defaults prints the choice those runs would make (report only: the default table is measured and checked by
benchmarks/defaults.py).

    python -m benchmarks.tuned_grids --problem gmm-64 --nfe 4,5,6,8,10,15,20 --out benchmarks/results/tuned-gmm-64
    python -m benchmarks.tuned_grids --smoke          (tiny sizes into a temporary folder)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

import torch

import diffsolve as ds
from diffsolve.bench.metrics import rel_err
from diffsolve.problems import resolve
from diffsolve.schedules import F64
from diffsolve.tuning import STANDARD_GRIDS, tune

from .common import Claims, output_arguments, read_json, report, smoke_argument, smoke_sizes, write
from .heldout import common_arguments, config, heldout_error, nfe_list, solve_heldout

FLIP = 0.5  # a sample whose own relative error exceeds this ended in another mode than the reference's
SLACK = 1e-9  # relative round-off allowed in "no worse than" (a tuned grid equal to its start gives the same error)


def large_set(model: Any, x: torch.Tensor, ref: torch.Tensor, solver: str, opts: dict[str, Any], grid: Any,
              nfe: int) -> dict[str, float]:
    """On the large held-out set: relative error, the number of flipped samples, the median per-sample error."""
    out = solve_heldout(model, x, solver, opts, grid, nfe)
    per = (out - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)
    return {"err": rel_err(out, ref), "flips": int((per > FLIP).sum()), "median": float(per.median())}


def standard_side(model: Any, x: torch.Tensor, ref: torch.Tensor, configs: list[str], nfe: int) -> dict[str, float]:
    """'configuration / grid' → held-out error, for every configuration on every standard grid it accepts."""
    every = {}
    for text in configs:
        solver, opts = config(text)
        for grid in STANDARD_GRIDS:
            try:
                every[f"{text} / {grid}"] = heldout_error(model, x, ref, solver, opts, grid, nfe)
            except ds.errors.DiffsolveError:
                continue
    return every


def tuned_record(args: argparse.Namespace, prob: Any, model: Any, x: torch.Tensor, ref: torch.Tensor, text: str,
                 nfe: int, big: Any) -> dict[str, Any]:
    """Tune `text` at `nfe` on the training draws; its held-out error, start, cost and grid."""
    solver, opts = config(text)
    tg = tune(prob, solver, nfe, train_seeds=[args.train_seed], heldout_seeds=None, n=args.n_train,
              candidates=args.candidates, teacher_tol=args.teacher_tol, max_evals=args.max_evals, progress=False,
              **opts)
    e = heldout_error(model, x, ref, solver, opts, tg.grid, nfe)
    rec = {"config": text, "err": e, "start": tg.start, "train_rmse": tg.train_error,
           "start_train_rmse": tg.start_train_error, "cost_nfe": tg.cost_nfe, "seconds": tg.cost_seconds,
           "cpu_seconds": tg.cost_cpu_seconds, "times": tg.grid.t.tolist(),
           "eval_times": None if tg.grid.t_eval is None else tg.grid.t_eval.tolist(),
           "chosen": tg.chosen, "validation_rmse": tg.validation_error}
    if big is not None:
        rec["large"] = large_set(model, *big, solver, opts, tg.grid, nfe)
    print(f"  NFE {nfe} tuned {text}: held-out rel {e:.4g} (start {tg.start}), {tg.cost_nfe} NFE, "
          f"{tg.cost_seconds:.1f} s wall, {tg.cost_cpu_seconds:.1f} s CPU", flush=True)
    return rec


def run(args: argparse.Namespace, out: Any) -> list[dict[str, Any]]:
    prob = resolve(args.problem)
    sched = prob.default_schedule()
    model = prob.model(sched, dtype=F64)
    x = prob.x_T(args.n_eval, args.heldout_seed, sched)
    t0 = time.perf_counter()
    ref = prob.reference(x, sched, rtol=prob.default_ref_tol, atol=prob.default_ref_tol)
    print(f"{prob.name}: reference of {args.n_eval} held-out draws in {time.perf_counter() - t0:.1f} s", flush=True)
    big = None
    if args.n_eval_large:  # a second, larger held-out set (seed --heldout-seed + 1): rel. error, flips, median
        x_big = prob.x_T(args.n_eval_large, args.heldout_seed + 1, sched)
        big = (x_big, prob.reference(x_big, sched, rtol=prob.default_ref_tol, atol=prob.default_ref_tol))
    rows = []
    for nfe in args.nfe:
        every = standard_side(model, x, ref, args.standard, nfe)
        err, name = min(((e, k) for k, e in every.items()), default=(math.inf, ""))
        row: dict[str, Any] = {"problem": prob.name, "nfe": nfe, "standard": name, "standard_err": err,
                               "standard_all": every}
        if big is not None:
            large = {k: large_set(model, *big, *config(k.split(" / ")[0]), k.split(" / ")[1], nfe) for k in every}
            row["standard_large"] = min(large.items(), key=lambda kv: kv[1]["err"])
        tuning = args.tuned if args.tune_nfe is None or nfe in args.tune_nfe else ()
        if tuning:
            row["tuned_all"] = [tuned_record(args, prob, model, x, ref, text, nfe, big) for text in tuning]
        row["tuned"] = min(row.get("tuned_all", []), key=lambda r: r["err"], default=None)
        rows.append(row)
        if out:  # finished rows are kept even if a later NFE is interrupted
            write(out, rows, markdown)
        tb = "" if row["tuned"] is None else f" | tuned {row['tuned']['config']} {row['tuned']['err']:.4g}"
        print(f"NFE {nfe}: standard {name} {err:.4g}{tb}", flush=True)
    return rows


def check(rows: list[dict[str, Any]], claims: Claims) -> None:
    """Each tuned grid: held-out error ≤ its configuration's best standard grid's; training error ≤ its start's."""
    for r in rows:
        for t in r.get("tuned_all", []):
            own = {k: v for k, v in r["standard_all"].items() if k.startswith(t["config"] + " / ")}
            where = f"{r['problem']} NFE {r['nfe']} {t['config']}"
            if own:
                grid, best = min(own.items(), key=lambda kv: kv[1])
                claims.check(t["err"] <= best * (1 + SLACK),
                             f"{where}: tuned held-out error {t['err']:.4g} ≤ its best standard grid's "
                             f"({grid.split(' / ')[1]} {best:.4g})")
            else:
                claims.skip(f"{where}: tuned vs its best standard grid", "the configuration is not in --standard")
            claims.check(t["train_rmse"] <= t["start_train_rmse"] * (1 + SLACK),
                         f"{where}: tuned training error {t['train_rmse']:.4g} ≤ its start's ({t['start']} "
                         f"{t['start_train_rmse']:.4g})")


def markdown_large(rows: list[dict[str, Any]]) -> str:
    """The large held-out set: best standard vs the tuned configuration, with flips and median per-sample error."""
    lines = ["| NFE | best standard (solver / grid) | rel. err | flips | median | tuned | rel. err | flips | median "
             "| tuned / best standard |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "standard_large" not in r or r["tuned"] is None or "large" not in r["tuned"]:
            continue
        name, s = r["standard_large"]
        t = r["tuned"]["large"]
        lines.append(f"| {r['nfe']} | {name} | {s['err']:.3g} | {s['flips']} | {s['median']:.3g} | "
                     f"{r['tuned']['config']} | {t['err']:.3g} | {t['flips']} | {t['median']:.3g} | "
                     f"{t['err'] / s['err']:.2f}× |")
    return "\n".join(lines)


def markdown_main(rows: list[dict[str, Any]]) -> str:
    """Per NFE: the best standard configuration, the best tuned one, its own best standard grid, the tuning cost."""
    lines = ["| NFE | best standard (solver / grid) | rel. err | tuned solver | its best standard grid | tuned "
             "rel. err | tuned / best standard | tuning cost (NFE, s wall, s CPU) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["tuned"]
        if t is None:
            lines.append(f"| {r['nfe']} | {r['standard']} | {r['standard_err']:.3g} | not tuned | | | | |")
            continue
        own = {k: v for k, v in r.get("standard_all", {}).items() if k.startswith(t["config"] + " / ")}
        mine = min(own.items(), key=lambda kv: kv[1]) if own else None
        mine_txt = "—" if mine is None else f"{mine[0].split(' / ')[1]} {mine[1]:.3g}"
        lines.append(f"| {r['nfe']} | {r['standard']} | {r['standard_err']:.3g} | {t['config']} | {mine_txt} | "
                     f"{t['err']:.3g} | {t['err'] / r['standard_err']:.2f}× | {t['cost_nfe']}, {t['seconds']:.0f}, "
                     f"{t['cpu_seconds']:.0f} |")
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The main table, and the large held-out set's when it was measured."""
    if any("standard_large" in r for r in rows):
        return markdown_main(rows) + "\n\n" + markdown_large(rows)
    return markdown_main(rows)


def default_choices(runs: list[list[dict[str, Any]]]) -> list[tuple[int, list[tuple[str, float, float]]]]:
    """Per NFE every run measured: the standard configurations every run holds, ranked by the geometric mean over
    runs of err / best err, as (configuration / grid, mean, worst)."""
    out = []
    for nfe in sorted(set.intersection(*({r["nfe"] for r in rows} for rows in runs))):
        per = [next(r for r in rows if r["nfe"] == nfe) for rows in runs]
        scored = []
        for c in sorted(set.intersection(*(set(r["standard_all"]) for r in per))):  # ties: by name, not hash order
            ratios = [r["standard_all"][c] / r["standard_err"] for r in per]
            scored.append((c, math.exp(sum(map(math.log, ratios)) / len(ratios)), max(ratios)))
        out.append((nfe, sorted(scored, key=lambda s: s[1])))
    return out


def defaults(runs: list[list[dict[str, Any]]]) -> str:
    """Per NFE, the standard configuration with the smallest geometric mean over problems of err / best err
    (over the configurations every run measured); diffsolve.plan.DEFAULT_CONFIGS is chosen by benchmarks/defaults.py."""
    lines = ["| NFE | configuration | geometric mean of err / best | worst err / best | runner-up (its mean) |",
             "|---|---|---|---|---|"]
    for nfe, ranked in default_choices(runs):
        (best, gm, worst), (second, gm2, _) = ranked[0], ranked[1]
        lines.append(f"| {nfe} | {best} | {gm:.3f} | {worst:.2f} | {second} ({gm2:.3f}) |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(p)
    p.add_argument("--tune-nfe", type=nfe_list, default=None, help="tune only at these NFE (default: every --nfe)")
    p.add_argument("--n-eval-large", type=int, default=0,
                   help="also measure on this many draws of seed --heldout-seed + 1: rel. error, flips, median")
    p.add_argument("--threads", type=int, default=1)
    output_arguments(p)
    p.add_argument("--defaults", default=None, help="comma-separated OUT.json files: print the default-table choice")
    smoke_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    claims = Claims("tuned_grids", args.smoke)
    if args.defaults:
        runs = [read_json(f) for f in args.defaults.split(",")]
        print(defaults(runs))  # report only: the default table is chosen and checked by benchmarks/defaults.py
        return claims.exit_status()
    smoke_sizes(args, problem="gmm-2d", nfe=[5], standard=["ipndm:order=3", "dpmpp2m:lower_order_final=1"],
                tuned=["ipndm:order=3"], n_eval=32, n_train=32, n_eval_large=0, candidates=16, max_evals=24)
    torch.set_num_threads(args.threads)
    return report(args, claims, lambda out: run(args, out), markdown, check)


if __name__ == "__main__":
    sys.exit(main())
