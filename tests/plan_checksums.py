"""Checksums of every exponential-integrator plan over 1920 (schedule, grid, solver, options) cases.

`python -m tests.plan_checksums OUT.json` writes them with whatever diffsolve is imported: run in a checkout of
4cc9133 (the code before the coefficient formulas took tensors; PYTHONPATH=that checkout) it wrote
tests/data/plans_4cc9133.json, which tests/test_tuning_gradients.py compares the float path with. Per case: the sum
S = Σ_k u_k c_k over the plan's numbers c_k (each combination's a and weights, each step's noise std) with fixed
pseudo-random u_k ∈ [1, 2), and A = Σ_k |u_k c_k|: two plans that agree to round-off agree to ~1e-15·A, on any CPU
(the grids' times, computed by torch, differ in the last bit between CPUs, so an exact hash of the plans does not
carry from one machine to another).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator

import torch

import diffsolve as ds
from diffsolve.solvers import get_solver

F64 = torch.float64
CASES = {
    "ddim": [{}], "dpm2m": [{}, {"variant": "taylor"}], "dpm3m": [{}, {"variant": "diffusers"}],
    "dpmpp2m": [{}, {"variant": "taylor"}], "dpmpp3m": [{"variant": "taylor"}, {"variant": "diffusers"}],
    "deis": [{"order": 1}, {"order": 2}, {"order": 3}],
    "unipc": [dict(order=o, variant=v, form=f, corrector=c) for o in (2, 3, 4) for v in ("bh1", "bh2")
              for f in ("noise", "data") for c in (True, False) if not (c is False and o > 3)],
    "ipndm": [{"order": o} for o in (1, 2, 3, 4)], "ipndm_v": [{"order": o} for o in (1, 2, 3, 4)],
}


def grids() -> Iterator:
    """Three schedules × (logsnr 7, quadratic 12, karras 5, a seeded custom grid of 10 steps)."""
    for sched in (ds.VPLinear(), ds.schedules.DiscreteDDPM(), ds.schedules.Flow(shift=3.0)):
        for name, steps in (("logsnr", 7), ("quadratic", 12), ("karras", 5)):
            yield ds.grids.make(name, sched, steps)
        g = torch.Generator().manual_seed(0)
        inner = sched.t_min + (sched.t_max - sched.t_min) * torch.rand(9, generator=g, dtype=F64)
        t = torch.cat([torch.tensor([sched.t_max], dtype=F64), torch.sort(inner, descending=True).values,
                       torch.tensor([sched.t_min], dtype=F64)])
        yield ds.grids.custom(sched, t)


def numbers(plan) -> list[float]:
    """The plan's numbers in order: per step each combination's (a, w…), then its noise std."""
    out: list[float] = []
    for step in plan.steps:
        for c in [step.predict] + ([step.correct] if step.correct is not None else []) + [s.combo for s in step.stages]:
            out += [float(c.a), *(float(w) for w in c.w)]
        out.append(float(step.noise_std or 0.0))
    return out


def checksum(values: list[float]) -> tuple[float, float]:
    """(S, A) = (Σ u_k c_k, Σ |u_k c_k|), u_k = 1 + frac(0.6180339887·(k + 1))."""
    u = [1.0 + math.fmod(0.6180339887498949 * (k + 1), 1.0) for k in range(len(values))]
    return math.fsum(a * b for a, b in zip(u, values)), math.fsum(abs(a * b) for a, b in zip(u, values))


def plan_checksums() -> dict[str, tuple[float, float]]:
    """'schedule|grid|solver' → (S, A) over the numbers of that solver's 16 or more cases on that grid, in order (each
    solver's float plan in λ, every option list, lower_order_final and to_zero on and off): 120 groups, 1920 plans."""
    out, plans = {}, 0
    for grid in grids():
        model = ds.EpsModel(lambda x, t: x * 0, grid.schedule)
        for name, optlist in CASES.items():
            solver, values = get_solver(name), []
            for opts in optlist:
                for lof in (True, False):
                    for tz in (False, True):
                        o = dict(opts, lower_order_final=lof, to_zero=tz)
                        form = solver.form_of(dict(o))
                        plan = solver.plan(ds.ode(model, "lambda"), grid, form,  # (plan() takes unchecked options)
                                           **{k: v for k, v in o.items() if k != "form"})
                        values += numbers(plan)
                        plans += 1
            out[f"{type(grid.schedule).__name__}|{grid.name}|{name}"] = checksum(values)
    assert plans == 1920, plans
    return out


if __name__ == "__main__":
    sums = plan_checksums()
    with open(sys.argv[1], "w") as f:
        json.dump({k: [s, a] for k, (s, a) in sums.items()}, f, indent=0)
    print(f"wrote {len(sums)} checksums (1920 plans) to {sys.argv[1]}")
