"""Best standard configuration vs best tuned grid per NFE, on held-out draws (benchmarks/RESULTS.md, "Tuned grids").

Standard side: every solver configuration in --standard on every standard grid (logsnr, time, quadratic,
karras), relative error ‖x − ref‖/‖ref‖ on the held-out draws (seed --heldout-seed, n --n-eval) against
the float64 reference; the best per NFE is reported. Tuned side: each configuration in --tuned is tuned
(diffsolve.tuning.tune, DP + Nelder–Mead) on the training draws (seed --train-seed, n --n-train) and
measured on the same held-out draws. Tuning cost: model evaluations, wall and CPU seconds per (solver, NFE).

    python benchmarks/tuned_grids.py --problem gmm-64 --nfe 4,5,6,8,10,15,20 --out benchmarks/results/tuned-gmm-64
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

import diffsolve as ds
from diffsolve.bench.metrics import rel_err
from diffsolve.plan import dynamics_for
from diffsolve.problems import resolve
from diffsolve.schedules import F64
from diffsolve.solvers import get_solver
from diffsolve.tuning import STANDARD_GRIDS, tune

# every choice the solvers' automatic defaults would make is pinned, so that the committed results rerun as they were
STANDARD = ("dpmpp2m:lower_order_final=1", "dpmpp3m:lower_order_final=1:variant=taylor", "unipc:lower_order_final=1",
            "unipc:lower_order_final=0", "deis:lower_order_final=1", "ipndm:order=2", "ipndm:order=3", "ipndm",
            "ipndm_v:order=3", "ipndm_v:order=2")
TUNED = ("ipndm:order=3", "unipc:lower_order_final=1")


def config(text: str) -> tuple[str, dict[str, Any]]:
    """'solver:key=value:…' → (solver, options), values read as JSON (1 → 1, true → True) or else as text."""
    name, *pairs = text.split(":")
    opts = {}
    for pair in pairs:
        k, _, v = pair.partition("=")
        try:
            value = json.loads(v)
        except json.JSONDecodeError:
            value = v  # variant=taylor
        opts[k] = bool(value) if k == "lower_order_final" else value
    return name, opts


def solve_heldout(model: Any, x: torch.Tensor, solver: str, opts: dict[str, Any], grid: Any, nfe: int) -> torch.Tensor:
    """`solver` on `grid` (a spec or a Grid) at `nfe` from the held-out x_T, float64."""
    method = get_solver(solver)
    options = {**method.budget_options(nfe), **opts}
    g = ds.grids.build(grid, model.schedule, None if isinstance(grid, ds.grids.Grid) else method.steps_for(nfe))
    return ds.solve(dynamics_for(model, method, options), x, g, method, **options).x.to(F64)


def heldout_error(problem: Any, model: Any, x: torch.Tensor, ref: torch.Tensor, solver: str,
                  opts: dict[str, Any], grid: Any, nfe: int) -> float:
    """Relative error ‖x − ref‖/‖ref‖ of `solver` on `grid` at `nfe` from the held-out x_T."""
    return rel_err(solve_heldout(model, x, solver, opts, grid, nfe), ref)


FLIP = 0.5  # a sample whose own relative error exceeds this ended in another mode than the reference's


def large_set(model: Any, x: torch.Tensor, ref: torch.Tensor, solver: str, opts: dict[str, Any], grid: Any,
              nfe: int) -> dict[str, float]:
    """On the large held-out set: relative error, the number of flipped samples, the median per-sample error."""
    out = solve_heldout(model, x, solver, opts, grid, nfe)
    per = (out - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)
    return {"err": rel_err(out, ref), "flips": int((per > FLIP).sum()), "median": float(per.median())}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
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
        best, every = (float("inf"), ""), {}
        for text in args.standard:
            solver, opts = config(text)
            for grid in STANDARD_GRIDS:
                try:
                    e = heldout_error(prob, model, x, ref, solver, opts, grid, nfe)
                except ds.errors.DiffsolveError:
                    continue
                every[f"{text} / {grid}"] = e
                best = min(best, (e, f"{text} / {grid}"))
        row: dict[str, Any] = {"problem": prob.name, "nfe": nfe, "standard": best[1], "standard_err": best[0],
                               "standard_all": every}
        if big is not None:
            large = {name: large_set(model, *big, *config(name.split(" / ")[0]), name.split(" / ")[1], nfe)
                     for name in every}
            row["standard_large"] = min(large.items(), key=lambda kv: kv[1]["err"])
        tuned_best = None
        for text in args.tuned if args.tune_nfe is None or nfe in args.tune_nfe else ():
            solver, opts = config(text)
            tg = tune(prob, solver, nfe, train_seeds=[args.train_seed], heldout_seeds=None, n=args.n_train,
                      candidates=args.candidates, teacher_tol=args.teacher_tol, max_evals=args.max_evals,
                      progress=False, **opts)
            e = heldout_error(prob, model, x, ref, solver, opts, tg.grid, nfe)
            rec = {"config": text, "err": e, "start": tg.start, "train_rmse": tg.train_error,
                   "start_train_rmse": tg.start_train_error, "cost_nfe": tg.cost_nfe, "seconds": tg.cost_seconds,
                   "cpu_seconds": tg.cost_cpu_seconds, "times": tg.grid.t.tolist(),
                   "eval_times": None if tg.grid.t_eval is None else tg.grid.t_eval.tolist(),
                   "chosen": tg.chosen, "validation_rmse": tg.validation_error}
            if big is not None:
                rec["large"] = large_set(model, *big, solver, opts, tg.grid, nfe)
            row.setdefault("tuned_all", []).append(rec)
            print(f"  NFE {nfe} tuned {text}: held-out rel {e:.4g} (start {tg.start}), {tg.cost_nfe} NFE, "
                  f"{tg.cost_seconds:.1f} s wall, {tg.cost_cpu_seconds:.1f} s CPU", flush=True)
            if tuned_best is None or e < tuned_best["err"]:
                tuned_best = rec
        row["tuned"] = tuned_best
        rows.append(row)
        if args.out:  # finished rows are kept even if a later NFE is interrupted
            write(args.out, rows)
        tb = "" if tuned_best is None else f" | tuned {tuned_best['config']} {tuned_best['err']:.4g}"
        print(f"NFE {nfe}: standard {best[1]} {best[0]:.4g}{tb}", flush=True)
    return rows


def write(out: str, rows: Any, render: Any = None) -> None:
    """OUT.json (the rows) and OUT.md (their table, by `render`, default this script's markdown)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out + ".json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    Path(out + ".md").write_text((render or markdown)(rows) + "\n", encoding="utf-8")


def output_arguments(p: argparse.ArgumentParser) -> None:
    """--out OUT (OUT.json and OUT.md, written as rows finish) and --render OUT.json (print its table only)."""
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md (as the rows finish)")
    p.add_argument("--render", default=None, help="only print the table of a finished run's OUT.json")


def rendered(args: argparse.Namespace, render: Any) -> bool:
    """With --render, print render(rows of that file) and return True."""
    if args.render:
        print(render(json.loads(Path(args.render).read_text(encoding="utf-8"))))
    return bool(args.render)


def common_arguments(p: argparse.ArgumentParser) -> None:
    """The options this script shares with peers_accuracy.py: problem, NFE, configurations, draws, seeds."""
    p.add_argument("--problem", default="gmm-64")
    p.add_argument("--nfe", type=lambda s: [int(v) for v in s.split(",")], default=[4, 5, 6, 8, 10, 15, 20])
    p.add_argument("--standard", type=lambda s: s.split(","), default=list(STANDARD))
    p.add_argument("--tuned", type=lambda s: s.split(","), default=list(TUNED))
    p.add_argument("--n-eval", type=int, default=256)
    p.add_argument("--n-train", type=int, default=1024)
    p.add_argument("--train-seed", type=int, default=10)
    p.add_argument("--heldout-seed", type=int, default=0)


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


def markdown(rows: list[dict[str, Any]]) -> str:
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
    if any("standard_large" in r for r in rows):
        lines += ["", markdown_large(rows)]
    return "\n".join(lines)


def defaults(runs: list[list[dict[str, Any]]]) -> str:
    """Per NFE, the standard configuration with the smallest geometric mean over problems of err / best err
    (over the configurations every run measured): the measurement behind diffsolve.solve.DEFAULT_CONFIGS."""
    lines = ["| NFE | configuration | geometric mean of err / best | worst err / best | runner-up (its mean) |",
             "|---|---|---|---|---|"]
    nfes = sorted(set.intersection(*({r["nfe"] for r in rows} for rows in runs)))
    for nfe in nfes:
        per = [next(r for r in rows if r["nfe"] == nfe) for rows in runs]
        common = set.intersection(*(set(r["standard_all"]) for r in per))
        score = {}
        for c in common:
            ratios = [r["standard_all"][c] / r["standard_err"] for r in per]
            score[c] = (math.exp(sum(map(math.log, ratios)) / len(ratios)), max(ratios))
        ranked = sorted(score.items(), key=lambda kv: kv[1][0])
        (best, (gm, worst)), (second, (gm2, _)) = ranked[0], ranked[1]
        lines.append(f"| {nfe} | {best} | {gm:.3f} | {worst:.2f} | {second} ({gm2:.3f}) |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(p)
    p.add_argument("--tune-nfe", type=lambda s: [int(v) for v in s.split(",")], default=None,
                   help="tune only at these NFE (default: every --nfe)")
    p.add_argument("--n-eval-large", type=int, default=0,
                   help="also measure on this many draws of seed --heldout-seed + 1: rel. error, flips, median")
    p.add_argument("--candidates", type=int, default=64)
    p.add_argument("--teacher-tol", type=float, default=None,
                   help="the RMSE the tuner's teacher must reach (default: 0.1× the training error reached)")
    p.add_argument("--max-evals", type=int, default=None,
                   help="refinement budget in objective evaluations per stage (default: the tuner's)")
    p.add_argument("--threads", type=int, default=1)
    output_arguments(p)
    p.add_argument("--defaults", default=None, help="comma-separated OUT.json files: print the default-table choice")
    args = p.parse_args()
    if args.defaults:
        print(defaults([json.loads(Path(f).read_text(encoding="utf-8")) for f in args.defaults.split(",")]))
        return
    if rendered(args, markdown):
        return
    torch.set_num_threads(args.threads)
    rows = run(args)
    print(markdown(rows))
    if args.out:
        write(args.out, rows)


if __name__ == "__main__":
    main()
