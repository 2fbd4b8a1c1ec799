"""What tuning a grid costs and reaches: gradients through the solver, a measured teacher, on problems of each kind.

Cases (each tunes with diffsolve.tuning.tune's defaults — n = 256 training draws of seed 10, validation seed 7929,
teacher ipndm_v 4 on 126 √t-steps — and a fresh teacher cache, so every cost includes the teacher; cost is counted in
sample-evaluations, model calls × batch, forward, with the backward ones beside; CPU seconds with one thread):
  gmm      gmm-64, ipndm order 3 and unipc (lower_order_final) at NFE 10: cost ≤ 300k sample-evaluations and held-out
           error ≤ 1.2× the tuner before gradients (benchmarks/results/tuned-gmm-64.json, same protocol: relative
           error ‖x − ref‖/‖ref‖ on seed 0, n = 256; also seed 1, n = 4096 with flips and medians).
  digits   digits-8x8, unipc tuned at NFE 5, 6, 8, 10 in one call (teacher and DP shared) against the best standard
           configuration of five on four grids (held-out seed 0, n --n-eval, float64, dopri8 reference at 1e-6);
           NFE 6 tuned alone: ≤ 60 s CPU. Relative RMSE with the median and 90th percentile of the per-draw error.
  unet     a diffusers UNet2DModel (8×8×1, blocks (16, 32), one layer per block, random seeded weights) through
           diffsolve.interop.from_diffusers(unet, DDPMScheduler()), ipndm at NFE 6, n = 256: ≤ 60 s CPU end to end,
           with the progress bars on stderr.
  objectives  which objective generalises: mean / trimmed / log on gmm-64 and gmm-2d, ipndm 3 and unipc, NFE 6 and
           10, training seeds 10–13; held-out seed 1, n = 4096 (relative error, flips, median).
  gpu      (--device cuda) dpmpp2m at NFE 10 on the digits UNet with 1,024 draws: seconds on the card.

    OMP_NUM_THREADS=1 python -m benchmarks.tuning_cost --case gmm,digits,unet [--out benchmarks/results/tuning-cost]
    OMP_NUM_THREADS=1 python -m benchmarks.tuning_cost --case objectives
    python -m benchmarks.tuning_cost --device cuda                        (the GPU case; prints seconds)
    python -m benchmarks.tuning_cost --smoke                               (tiny sizes, every case but the GPU one)
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import diffsolve as ds
from diffsolve.tuning import STANDARD_GRIDS, tune

from .common import RESULTS, Claims, output_arguments, read_json, report, smoke_argument
from .heldout import config, solve_heldout
from .tuned_grids import FLIP

F64 = torch.float64
GMM_CONFIGS = ("ipndm:order=3", "unipc:lower_order_final=1")
DIGITS_STANDARD = ("dpmpp2m:lower_order_final=1", "dpmpp3m:lower_order_final=1:variant=taylor",
                   "unipc:lower_order_final=1", "ipndm:order=2", "ipndm:order=3")
DIGITS_TUNED = "unipc:lower_order_final=1"
OBJECTIVES = (("mean", {}), ("trimmed", {"objective": "trimmed", "trim": 0.1}),
              ("log", {"objective": "log", "trim": 0.1}))
TARGETS = {"gmm_samples": 300_000, "gmm_ratio": 1.2, "digits_cpu": 60.0, "digits_ratio": 0.6, "unet_cpu": 60.0}


def per_draw(out: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """Relative error ‖x − ref‖/‖ref‖ over all draws, and the per-draw relative error's median, 90th percentile and
    the draws above FLIP (ended in another mode)."""
    per = (out - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)
    return {"err": float((out - ref).norm() / ref.norm()), "median": float(per.median()),
            "p90": float(torch.quantile(per, 0.9)), "flips": int((per > FLIP).sum())}


def measure(model: Any, x: torch.Tensor, ref: torch.Tensor, solver: str, opts: dict[str, Any], grid: Any,
            nfe: int) -> dict[str, float]:
    """`solver` on `grid` (a spec or a Grid) at `nfe` from x, float64, against ref."""
    return per_draw(solve_heldout(model, x, solver, opts, grid, nfe), ref)


def heldout_sets(prob: Any, sizes: list[tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(x_T, float64 reference) of each (seed, n)."""
    sched = prob.default_schedule()
    out = []
    for seed, n in sizes:
        x = prob.x_T(n, seed, sched)
        out.append((x, prob.reference(x, sched, rtol=prob.default_ref_tol, atol=prob.default_ref_tol)))
    return out


def tuned_row(tg: Any, cpu: float) -> dict[str, Any]:
    """What a TunedGrid cost and where it stopped."""
    return {"cost_samples": tg.cost_samples, "cost_vjp_samples": tg.cost_vjp_samples, "cost_nfe": tg.cost_nfe,
            "cpu_seconds": round(cpu, 2), "by_stage": tg.cost_by_stage, "cpu_by_stage": tg.cpu_by_stage,
            "estimated_samples": tg.estimated_samples, "teacher": tg.teacher, "chosen": tg.chosen,
            "start": tg.start, "evals": tg.evals, "gradient": tg.gradient, "times": tg.grid.t.tolist(),
            "eval_times": None if tg.grid.t_eval is None else tg.grid.t_eval.tolist()}


def timed_tune(*args: Any, **kw: Any) -> tuple[Any, float]:
    """tune(…) with a fresh teacher cache (its cost included) and its CPU seconds."""
    with tempfile.TemporaryDirectory(prefix="diffsolve-teachers-") as cache:
        clock = time.process_time()
        tg = tune(*args, cache_dir=cache, **kw)
        return tg, time.process_time() - clock


def committed_gmm() -> dict[str, dict[str, Any]]:
    """The tuner before gradients at NFE 10 (benchmarks/results/tuned-gmm-64.json): error, its 4096-draw set, cost."""
    path = RESULTS / "tuned-gmm-64.json"
    row = next(r for r in read_json(path) if r["nfe"] == 10)
    return {t["config"]: {"err": t["err"], "large": t.get("large"), "cost_samples": t["cost_nfe"] * 1024,
                          "cpu_seconds": t["cpu_seconds"]} for t in row["tuned_all"]}


def case_gmm(args: argparse.Namespace) -> list[dict[str, Any]]:
    prob = ds.problems.get(args.gmm_problem)
    model = prob.model(prob.default_schedule(), dtype=F64)
    sets = heldout_sets(prob, [(0, args.n_eval_gmm), (1, args.n_eval_large)])
    before = committed_gmm() if not args.smoke else {}
    rows = []
    for text in GMM_CONFIGS:
        solver, opts = config(text)
        tg, cpu = timed_tune(prob, solver, args.gmm_nfe, progress=False, **args.tune_kw, **opts)
        row = {"case": "gmm", "config": text, "nfe": args.gmm_nfe, **tuned_row(tg, cpu),
               "heldout": measure(model, *sets[0], solver, opts, tg.grid, args.gmm_nfe),
               "large": measure(model, *sets[1], solver, opts, tg.grid, args.gmm_nfe), "before": before.get(text)}
        print(f"gmm {text}: rel {row['heldout']['err']:.4g} (before {row['before'] and row['before']['err']}), "
              f"{tg.cost_samples:,} + {tg.cost_vjp_samples:,} sample-evals, {cpu:.1f} s CPU", flush=True)
        rows.append(row)
    return rows


def best_standard(model: Any, x: torch.Tensor, ref: torch.Tensor, nfe: int) -> tuple[str, dict[str, float]]:
    """The best standard configuration on the held-out draws: ('config / grid', its measures)."""
    best: tuple[str, dict[str, float]] = ("", {"err": math.inf})
    for text in DIGITS_STANDARD:
        solver, opts = config(text)
        for grid in STANDARD_GRIDS:
            m = measure(model, x, ref, solver, opts, grid, nfe)
            if m["err"] < best[1]["err"]:
                best = (f"{text} / {grid}", m)
    return best


def case_digits(args: argparse.Namespace) -> list[dict[str, Any]]:
    prob = ds.problems.get("digits-8x8")
    model = prob.model(prob.default_schedule(), dtype=F64)
    (x, ref), = heldout_sets(prob, [(0, args.n_eval_digits)])
    solver, opts = config(DIGITS_TUNED)
    single, cpu6 = timed_tune(prob, solver, 6, progress=False, **args.tune_kw, **opts)
    print(f"digits NFE 6 alone: {cpu6:.1f} s CPU, {single.cost_samples:,} sample-evals", flush=True)
    many, cpu_all = timed_tune(prob, solver, args.digits_nfe, progress=False, **args.tune_kw, **opts)
    rows = []
    for tg in many:
        name, std = best_standard(model, x, ref, tg.nfe)
        tuned = measure(model, x, ref, solver, opts, tg.grid, tg.nfe)
        row = {"case": "digits", "config": DIGITS_TUNED, "nfe": tg.nfe, "standard": name, "standard_m": std,
               "tuned_m": tuned, "ratio": tuned["err"] / std["err"], **tuned_row(tg, cpu_all)}
        if tg.nfe == 6:
            row["alone"] = tuned_row(single, cpu6) | {"m": measure(model, x, ref, solver, opts, single.grid, 6)}
        print(f"digits NFE {tg.nfe}: tuned {tuned['err']:.4g} / standard {name} {std['err']:.4g} = "
              f"{row['ratio']:.2f}", flush=True)
        rows.append(row)
    return rows


def small_unet(seed: int = 0) -> Any:
    """A diffusers UNet2DModel, 8×8×1, blocks (16, 32), one layer per block, random weights drawn from `seed`."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8).eval()


def case_unet(args: argparse.Namespace) -> list[dict[str, Any]]:
    from diffusers import DDPMScheduler

    with tempfile.TemporaryDirectory(prefix="diffsolve-teachers-") as cache:
        clock, wall = time.process_time(), time.perf_counter()
        model = ds.interop.from_diffusers(small_unet(), DDPMScheduler())
        tg = tune(model, "ipndm", 6, shape=(1, 8, 8), cache_dir=cache, progress=True,
                  **{**args.tune_kw, "n": args.n_unet})
        cpu, wall = time.process_time() - clock, time.perf_counter() - wall
    row = {"case": "unet", "config": "ipndm", "nfe": 6, "n": args.n_unet, "wall_seconds": round(wall, 2),
           "train_error": tg.train_error, "start_train_error": tg.start_train_error, "heldout": tg.heldout_error,
           "start_heldout": tg.start_heldout_error, **tuned_row(tg, cpu)}
    print(f"unet: {cpu:.1f} s CPU end to end ({wall:.1f} s wall), {tg.cost_samples:,} sample-evals, held-out RMSE "
          f"{tg.heldout_error:.4g} (start {tg.start} {tg.start_heldout_error:.4g})", flush=True)
    return [row]


def case_objectives(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for name in args.objective_problems:
        prob = ds.problems.get(name)
        model = prob.model(prob.default_schedule(), dtype=F64)
        sets = heldout_sets(prob, [(0, args.n_eval_gmm), (1, args.n_eval_large)])
        for text in GMM_CONFIGS:
            solver, opts = config(text)
            for nfe in args.objective_nfe:
                for seed in args.objective_seeds:
                    for label, kw in OBJECTIVES:
                        tg = tune(prob, solver, nfe, train_seeds=[seed], progress=False, cache_dir=args.cache,
                                  **{**args.tune_kw, **kw}, **opts)
                        rows.append({"case": "objectives", "problem": name, "config": text, "nfe": nfe, "seed": seed,
                                     "objective": label, "chosen": tg.chosen,
                                     "heldout": measure(model, *sets[0], solver, opts, tg.grid, nfe),
                                     "large": measure(model, *sets[1], solver, opts, tg.grid, nfe)})
                    print(f"objectives {name} {text} NFE {nfe} seed {seed}: " + ", ".join(
                        f"{r['objective']} {r['large']['err']:.3g}/{r['large']['flips']}" for r in rows[-3:]),
                        flush=True)
    return rows


def case_gpu(args: argparse.Namespace) -> list[dict[str, Any]]:
    from diffsolve import nets

    device = torch.device(args.device)
    model = nets.load_checkpoint(nets.checkpoint_path("digits-8x8"), device=device)[0]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    sync()
    wall = time.perf_counter()
    tg, cpu = timed_tune(model, "dpmpp2m", 10, shape=(1, 8, 8), device=device, progress=not args.smoke,
                         **{**args.tune_kw, "n": args.n_gpu})
    sync()
    wall = time.perf_counter() - wall
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"gpu: dpmpp2m NFE 10 on the digits UNet, {args.n_gpu} draws, on {name}: {wall:.1f} s wall, {cpu:.1f} s "
          f"CPU, {tg.cost_samples:,} + {tg.cost_vjp_samples:,} sample-evals", flush=True)
    return [{"case": "gpu", "device": name, "config": "dpmpp2m", "nfe": 10, "n": args.n_gpu,
             "wall_seconds": round(wall, 2), "heldout": tg.heldout_error, "start_heldout": tg.start_heldout_error,
             **tuned_row(tg, cpu)}]


CASES = {"gmm": case_gmm, "digits": case_digits, "unet": case_unet, "objectives": case_objectives, "gpu": case_gpu}


def markdown(rows: list[dict[str, Any]]) -> str:
    """The tables of each case that ran."""
    out: list[str] = []
    gmm = [r for r in rows if r["case"] == "gmm"]
    if gmm:
        out += ["| config (NFE 10) | held-out rel. err (256) | median | p90 | 4096: rel. err / flips / median | "
                "before: rel. err (256) | before: 4096 | cost fwd + bwd sample-evals | before: cost | CPU s |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in gmm:
            b, h, g = r["before"] or {}, r["heldout"], r["large"]
            bl = b.get("large") or {}
            out.append(f"| {r['config']} | {h['err']:.3g} | {h['median']:.2g} | {h['p90']:.2g} | {g['err']:.3g} / "
                       f"{g['flips']} / {g['median']:.2g} | {b.get('err', math.nan):.3g} | "
                       f"{bl.get('err', math.nan):.3g} / {bl.get('flips', '—')} / {bl.get('median', math.nan):.2g} | "
                       f"{r['cost_samples']:,} + {r['cost_vjp_samples']:,} | {b.get('cost_samples', 0):,} | "
                       f"{r['cpu_seconds']:.1f} |")
        out.append("")
    digits = [r for r in rows if r["case"] == "digits"]
    if digits:
        out += ["| NFE | best standard (config / grid) | rel. err / median / p90 | tuned unipc | rel. err / median / "
                "p90 | tuned / best standard |", "|---|---|---|---|---|---|"]
        for r in digits:
            s, t = r["standard_m"], r["tuned_m"]
            out.append(f"| {r['nfe']} | {r['standard']} | {s['err']:.3g} / {s['median']:.2g} / {s['p90']:.2g} | "
                       f"{r['chosen']} | {t['err']:.3g} / {t['median']:.2g} / {t['p90']:.2g} | {r['ratio']:.2f}× |")
        alone = next((r["alone"] for r in digits if "alone" in r), None)
        if alone:
            out.append(f"\nNFE 6 tuned alone: {alone['cpu_seconds']:.1f} s CPU, {alone['cost_samples']:,} + "
                       f"{alone['cost_vjp_samples']:,} sample-evaluations; held-out rel. err {alone['m']['err']:.3g}. "
                       f"NFE 5, 6, 8, 10 in one call: {digits[0]['cpu_seconds']:.1f} s CPU.")
        out.append("")
    timed = [r for r in rows if r["case"] in ("unet", "gpu")]
    if timed:
        out += ["| case | solver, NFE | draws | CPU s (end to end) | wall s | device | sample-evals fwd + bwd | "
                "teacher | held-out RMSE to the teacher (start) |", "|---|---|---|---|---|---|---|---|---|"]
        out += [f"| {r['case']} | {r['config']}, {r['nfe']} | {r['n']} | {r['cpu_seconds']:.1f} | "
                f"{r['wall_seconds']:.1f} | {r.get('device', 'cpu')} | {r['cost_samples']:,} + "
                f"{r['cost_vjp_samples']:,} | {r['teacher']['solver']}, {r['teacher']['nfe']} steps | "
                f"{r['heldout']:.3g} ({r['start']} {r['start_heldout']:.3g}) |" for r in timed]
        out.append("")
    objectives = [r for r in rows if r["case"] == "objectives"]
    if objectives:
        out += objectives_table(objectives)
    return "\n".join(out)


def objectives_table(rows: list[dict[str, Any]]) -> list[str]:
    """Per objective, over problems × configs × NFEs × seeds: geometric mean of the 4096-draw relative error and of
    its median against the mean objective's, total flips, and the 256-draw relative error's geometric mean ratio."""
    def gmean(values: list[float]) -> float:
        return math.exp(sum(math.log(max(v, 1e-300)) for v in values) / len(values))
    base = {(r["problem"], r["config"], r["nfe"], r["seed"]): r for r in rows if r["objective"] == "mean"}
    lines = ["| objective | 4096: rel. err / mean's (geo. mean) | median / mean's | flips (total) | "
             "256: rel. err / mean's |", "|---|---|---|---|---|"]
    for label, _ in OBJECTIVES:
        mine = [r for r in rows if r["objective"] == label]
        pairs = [(r, base[(r["problem"], r["config"], r["nfe"], r["seed"])]) for r in mine]
        lines.append(f"| {label} | {gmean([a['large']['err'] / b['large']['err'] for a, b in pairs]):.3f} | "
                     f"{gmean([a['large']['median'] / b['large']['median'] for a, b in pairs]):.3f} | "
                     f"{sum(a['large']['flips'] for a, _ in pairs)} | "
                     f"{gmean([a['heldout']['err'] / b['heldout']['err'] for a, b in pairs]):.3f} |")
    return lines + [""]


def check(rows: list[dict[str, Any]], claims: Claims) -> None:
    """The targets of each case that ran (asserted at full size; printed in a smoke run)."""
    for r in (r for r in rows if r["case"] == "gmm"):
        claims.check(r["cost_samples"] <= TARGETS["gmm_samples"],
                     f"gmm {r['config']} NFE {r['nfe']}: {r['cost_samples']:,} forward sample-evaluations, teacher "
                     f"included (≤ {TARGETS['gmm_samples']:,}; backward {r['cost_vjp_samples']:,})", True)
        if r["before"]:
            ratio = r["heldout"]["err"] / r["before"]["err"]
            claims.check(ratio <= TARGETS["gmm_ratio"],
                         f"gmm {r['config']}: held-out rel. err {r['heldout']['err']:.4g} = {ratio:.2f}× the tuner "
                         f"before gradients ({r['before']['err']:.4g}; ≤ {TARGETS['gmm_ratio']}×)", True)
    for r in (r for r in rows if r["case"] == "digits"):
        claims.check(r["ratio"] <= TARGETS["digits_ratio"], f"digits NFE {r['nfe']}: tuned / best standard "
                     f"{r['ratio']:.2f} (≤ {TARGETS['digits_ratio']})", True)
        if "alone" in r:
            claims.check(r["alone"]["cpu_seconds"] <= TARGETS["digits_cpu"], f"digits NFE 6 tuned in "
                         f"{r['alone']['cpu_seconds']:.1f} s CPU (≤ {TARGETS['digits_cpu']:.0f})", True)
    for r in (r for r in rows if r["case"] == "unet"):
        claims.check(r["cpu_seconds"] <= TARGETS["unet_cpu"], f"unet ipndm NFE 6, n = {r['n']}: {r['cpu_seconds']:.1f} "
                     f"s CPU end to end (≤ {TARGETS['unet_cpu']:.0f})", True)
    for r in rows:
        if r["case"] != "objectives":
            claims.check(r["gradient"] == "autograd", f"{r['case']} {r['config']}: gradients by autograd")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", type=lambda s: s.split(","), default=None,
                   help=f"comma-separated cases among {', '.join(CASES)} (default: gmm,digits,unet; gpu with --device)")
    p.add_argument("--device", default=None, help="run the GPU case on this device (e.g. cuda)")
    p.add_argument("--n-eval-digits", type=int, default=256, help="held-out draws of digits-8x8")
    p.add_argument("--threads", type=int, default=1)
    output_arguments(p)
    smoke_argument(p)
    return p


def sizes(args: argparse.Namespace) -> None:
    """The case sizes: full, or tiny in a smoke run."""
    full = not args.smoke
    args.gmm_problem, args.gmm_nfe = ("gmm-64", 10) if full else ("gmm-2d", 4)
    args.n_eval_gmm, args.n_eval_large = (256, 4096) if full else (32, 64)
    args.digits_nfe = [5, 6, 8, 10] if full else [4, 5]
    args.n_eval_digits = args.n_eval_digits if full else 8
    args.n_unet, args.n_gpu = (256, 1024) if full else (16, 32)
    args.objective_problems = ["gmm-64", "gmm-2d"] if full else ["gmm-2d"]
    args.objective_nfe, args.objective_seeds = ([6, 10], [10, 11, 12, 13]) if full else ([4], [10])
    args.tune_kw = {} if full else {"n": 16, "candidates": 12, "batch_size": 8, "max_evals": 3}
    args.cache = Path(tempfile.mkdtemp(prefix="diffsolve-teachers-"))  # the objective study's shared teachers


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes(args)
    default = ["gmm", "digits", "unet"] + (["objectives", "gpu"] if args.smoke else [])
    cases = args.case or (["gpu"] if args.device else default)
    if "gpu" in cases:
        args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser().error(f"unknown cases {unknown}; choose among {', '.join(CASES)}")
    return report(args, Claims("tuning_cost", args.smoke), lambda out: [row for case in cases for row in
                                                                       CASES[case](args)], markdown, check)


if __name__ == "__main__":
    sys.exit(main())
