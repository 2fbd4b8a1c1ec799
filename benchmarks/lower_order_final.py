"""Does `lower_order_final` help, and which 3M variant? Error ratios per solver and NFE (benchmarks/RESULTS.md).

For each problem, solver configuration, standard grid (logsnr, time, quadratic, karras) and NFE: the
relative error ‖x − ref‖/‖ref‖ on held-out draws (seed 0, n 256; digits 64) with lower_order_final=True
and with False; the table gives, per solver and NFE, the geometric mean over problems and grids of the
ratio on/off (< 1: the lower-order last steps help); a second table gives DPM-Solver++(3M)'s
err(taylor)/err(diffusers) at equal lower_order_final. The measurement behind the automatic defaults
(diffsolve.solvers.exp.base.AUTO_LOWER_ORDER_FINAL_BELOW, multistep.AUTO_3M_TAYLOR_FROM) and iPNDM's off.

    PYTHONPATH=. python benchmarks/lower_order_final.py --problems gmm-64,gmm-2d,toy-2d --out OUT
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tuned_grids import heldout_error, output_arguments, rendered, write  # noqa: E402

from diffsolve.problems import resolve  # noqa: E402
from diffsolve.schedules import F64  # noqa: E402
from diffsolve.tuning import STANDARD_GRIDS  # noqa: E402

SOLVERS = (("dpmpp2m", {}), ("dpmpp3m", {"variant": "taylor"}), ("dpmpp3m", {"variant": "diffusers"}), ("unipc", {}),
           ("deis", {}), ("dpm2m", {}), ("ipndm", {"order": 3}), ("ipndm", {}))


def label(solver: str, opts: dict[str, Any]) -> str:
    return solver + "".join(f":{k}={v}" for k, v in sorted(opts.items()))


def measure(problems: list[str], nfes: list[int]) -> dict[str, list[float]]:
    """'problem|solver|grid|nfe' → [err with lower_order_final False, with True]."""
    out = {}
    for name in problems:
        prob = resolve(name)
        sched = prob.default_schedule()
        model = prob.model(sched, dtype=F64)
        n = 64 if name == "digits-8x8" else 256
        x = prob.x_T(n, 0, sched)
        ref = prob.reference(x, sched, rtol=prob.default_ref_tol, atol=prob.default_ref_tol)
        for solver, opts in SOLVERS:
            for grid in STANDARD_GRIDS:
                for nfe in nfes:
                    out[f"{name}|{label(solver, opts)}|{grid}|{nfe}"] = [
                        heldout_error(prob, model, x, ref, solver, {**opts, "lower_order_final": lof}, grid, nfe)
                        for lof in (False, True)]
        print(f"{name}: done", flush=True)
    return out


def markdown(data: dict[str, list[float]]) -> str:
    ratios: dict[tuple[str, int], list[float]] = defaultdict(list)
    for key, (off, on) in data.items():
        _, solver, _, nfe = key.split("|")
        if off > 0 and math.isfinite(off) and math.isfinite(on):
            ratios[(solver, int(nfe))].append(on / off)
    nfes = sorted({n for _, n in ratios})
    lines = ["| solver \\ NFE | " + " | ".join(map(str, nfes)) + " |", "|---" * (len(nfes) + 1) + "|"]
    for solver in sorted({s for s, _ in ratios}):
        cells = [math.exp(sum(map(math.log, r)) / len(r)) if (r := ratios.get((solver, n))) else math.nan
                 for n in nfes]
        lines.append(f"| {solver} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    lines += ["", "DPM-Solver++(3M), geometric mean of err(taylor)/err(diffusers):", "",
              "| lower_order_final \\ NFE | " + " | ".join(map(str, nfes)) + " |", "|---" * (len(nfes) + 1) + "|"]
    for i, lof in enumerate(("off", "on")):
        cells = []
        for n in nfes:
            r = [v[i] / data[k.replace("variant=taylor", "variant=diffusers")][i] for k, v in data.items()
                 if "dpmpp3m:variant=taylor" in k and k.endswith(f"|{n}")]
            r = [x for x in r if x > 0 and math.isfinite(x)]
            cells.append(math.exp(sum(map(math.log, r)) / len(r)) if r else math.nan)
        lines.append(f"| {lof} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", default="gmm-64,gmm-2d,toy-2d")
    p.add_argument("--nfe", type=lambda s: [int(v) for v in s.split(",")],
                   default=[4, 5, 6, 8, 10, 15, 20, 30, 40, 60, 100, 150])
    output_arguments(p)
    args = p.parse_args()
    if rendered(args, markdown):
        return
    torch.set_num_threads(1)
    data = measure(args.problems.split(","), args.nfe)
    table = markdown(data)
    print(table)
    if args.out:
        write(args.out, data, markdown)


if __name__ == "__main__":
    main()
