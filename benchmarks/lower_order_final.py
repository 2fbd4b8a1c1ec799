"""Does `lower_order_final` help, and which 3M variant? Error ratios per solver and NFE (benchmarks/RESULTS.md).

For each problem, solver configuration, standard grid (logsnr, time, quadratic, karras) and NFE: the
relative error ‖x − ref‖/‖ref‖ on held-out draws (seed 0, n 256; digits 64) with lower_order_final=True
and with False; the table gives, per solver and NFE, the geometric mean over problems and grids of the
ratio on/off (< 1: the lower-order last steps help); a second table gives DPM-Solver++(3M)'s
err(taylor)/err(diffusers) at equal lower_order_final. The measurement behind the automatic defaults
(diffsolve.solvers.exp.base.AUTO_LOWER_ORDER_FINAL_BELOW, multistep.AUTO_3M_TAYLOR_FROM) and iPNDM's off.

Checked (exit 1 when one fails), against the defaults the solvers declare: every error is finite; for each solver
whose lower_order_final defaults to automatic, the ratio on/off is ≤ 1 + BREAK_EVEN at every NFE below
AUTO_LOWER_ORDER_FINAL_BELOW steps (on is no worse there); with lower_order_final on, DPM-Solver++(3M)'s
err(taylor)/err(diffusers) is ≥ 1 − BREAK_EVEN below AUTO_3M_TAYLOR_FROM steps and ≤ 1 + BREAK_EVEN from there.

    python -m benchmarks.lower_order_final --problems gmm-64,gmm-2d,toy-2d --out OUT
    python -m benchmarks.lower_order_final --smoke          (tiny sizes into a temporary folder)
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict

import torch

from diffsolve.problems import resolve
from diffsolve.schedules import F64
from diffsolve.solvers import get_solver
from diffsolve.solvers.exp.base import AUTO_LOWER_ORDER_FINAL_BELOW
from diffsolve.solvers.exp.multistep import AUTO_3M_TAYLOR_FROM
from diffsolve.tuning import STANDARD_GRIDS

from .common import Claims, output_arguments, report, smoke_argument, smoke_sizes
from .heldout import config, heldout_error, label, nfe_list

SOLVERS = ("dpmpp2m", "dpmpp3m:variant=taylor", "dpmpp3m:variant=diffusers", "unipc", "deis", "dpm2m",
           "ipndm:order=3", "ipndm")
BREAK_EVEN = 0.02  # a ratio within 2 % of 1 is a tie (dpm2m: 1.01 at NFE 30 and 40)


def measure(problems: list[str], nfes: list[int], n: int | None = None) -> dict[str, list[float]]:
    """'problem|solver|grid|nfe' → [err with lower_order_final False, with True]."""
    out = {}
    for name in problems:
        prob = resolve(name)
        sched = prob.default_schedule()
        model = prob.model(sched, dtype=F64)
        x = prob.x_T(n or (64 if name == "digits-8x8" else 256), 0, sched)
        ref = prob.reference(x, sched, rtol=prob.default_ref_tol, atol=prob.default_ref_tol)
        for text in SOLVERS:
            solver, opts = config(text)
            for grid in STANDARD_GRIDS:
                for nfe in nfes:
                    out[f"{name}|{label(solver, opts)}|{grid}|{nfe}"] = [
                        heldout_error(model, x, ref, solver, {**opts, "lower_order_final": lof}, grid, nfe)
                        for lof in (False, True)]
        print(f"{name}: done", flush=True)
    return out


def geometric_mean(values: list[float]) -> float:
    """exp(mean(log v)); nan for no values."""
    return math.exp(sum(map(math.log, values)) / len(values)) if values else math.nan


def on_off(data: dict[str, list[float]]) -> dict[tuple[str, int], float]:
    """(solver, NFE) → geometric mean over problems and grids of err(on)/err(off)."""
    ratios: dict[tuple[str, int], list[float]] = defaultdict(list)
    for key, (off, on) in data.items():
        _, solver, _, nfe = key.split("|")
        if off > 0 and math.isfinite(off) and math.isfinite(on):
            ratios[(solver, int(nfe))].append(on / off)
    return {k: geometric_mean(v) for k, v in ratios.items()}


def taylor_diffusers(data: dict[str, list[float]], nfe: int, lof: int) -> float:
    """Geometric mean of DPM-Solver++(3M)'s err(taylor)/err(diffusers) at `nfe`, lower_order_final off (0)/on (1)."""
    r = [v[lof] / data[k.replace("variant=taylor", "variant=diffusers")][lof] for k, v in data.items()
         if "dpmpp3m:variant=taylor" in k and k.endswith(f"|{nfe}")]
    return geometric_mean([x for x in r if x > 0 and math.isfinite(x)])


def markdown(data: dict[str, list[float]]) -> str:
    ratios = on_off(data)
    nfes = sorted({n for _, n in ratios})
    lines = ["| solver \\ NFE | " + " | ".join(map(str, nfes)) + " |", "|---" * (len(nfes) + 1) + "|"]
    for solver in sorted({s for s, _ in ratios}):
        lines.append(f"| {solver} | " + " | ".join(f"{ratios.get((solver, n), math.nan):.2f}" for n in nfes) + " |")
    lines += ["", "DPM-Solver++(3M), geometric mean of err(taylor)/err(diffusers):", "",
              "| lower_order_final \\ NFE | " + " | ".join(map(str, nfes)) + " |", "|---" * (len(nfes) + 1) + "|"]
    for i, lof in enumerate(("off", "on")):
        lines.append(f"| {lof} | " + " | ".join(f"{taylor_diffusers(data, n, i):.2f}" for n in nfes) + " |")
    return "\n".join(lines)


def automatic(solver_label: str) -> bool:
    """Whether the solver's lower_order_final defaults to automatic (None: on below the threshold)."""
    schema = get_solver(config(solver_label)[0]).schema
    return next((o.default for o in schema if o.name == "lower_order_final"), False) is None


def check(data: dict[str, list[float]], claims: Claims) -> None:
    """The measured ratios against the defaults the solvers declare (see the module's docstring)."""
    bad = [k for k, v in data.items() if not all(math.isfinite(e) for e in v)]
    claims.check(not bad, f"all {2 * len(data)} errors are finite" + (f"; not: {bad[:3]}" if bad else ""))
    ratios = on_off(data)
    for solver in sorted({s for s, _ in ratios if automatic(s)}):
        below = {n: r for (s, n), r in ratios.items()
                 if s == solver and get_solver(config(solver)[0]).steps_for(n) < AUTO_LOWER_ORDER_FINAL_BELOW}
        worst = max(below.items(), key=lambda kv: kv[1], default=None)
        if worst:
            claims.check(worst[1] <= 1 + BREAK_EVEN, f"{solver}: lower_order_final on/off ≤ {1 + BREAK_EVEN:g} below "
                                                     f"{AUTO_LOWER_ORDER_FINAL_BELOW} steps (worst {worst[1]:.2f} at "
                                                     f"NFE {worst[0]})", full_size_only=True)
    for nfe in sorted({n for _, n in ratios}):
        r = taylor_diffusers(data, nfe, 1)
        if math.isnan(r):
            continue
        if get_solver("dpmpp3m").steps_for(nfe) < AUTO_3M_TAYLOR_FROM:
            claims.check(r >= 1 - BREAK_EVEN, f"NFE {nfe}: dpmpp3m err(taylor)/err(diffusers) {r:.2f} ≥ "
                                              f"{1 - BREAK_EVEN:g} (the published weights, the default here)",
                         full_size_only=True)
        else:
            claims.check(r <= 1 + BREAK_EVEN, f"NFE {nfe}: dpmpp3m err(taylor)/err(diffusers) {r:.2f} ≤ "
                                              f"{1 + BREAK_EVEN:g} (taylor, the default from {AUTO_3M_TAYLOR_FROM} "
                                              f"steps)", full_size_only=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", default="gmm-64,gmm-2d,toy-2d")
    p.add_argument("--nfe", type=nfe_list, default=[4, 5, 6, 8, 10, 15, 20, 30, 40, 60, 100, 150])
    p.add_argument("--n", type=int, default=None, help="held-out draws per problem (default 256, digits-8x8 64)")
    output_arguments(p)
    smoke_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    smoke_sizes(args, problems="gmm-2d", nfe=[5, 10], n=32)
    torch.set_num_threads(1)
    return report(args, Claims("lower_order_final", args.smoke),
                  lambda out: measure(args.problems.split(","), args.nfe, args.n), markdown, check)


if __name__ == "__main__":
    sys.exit(main())
