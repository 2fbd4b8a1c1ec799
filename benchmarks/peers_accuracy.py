"""Error against NFE beside the peers: k-diffusion and diffusers samplers vs diffsolve (benchmarks/RESULTS.md).

One problem (default gmm-64, its exact model), one schedule — diffusers' default DDPM table (linear betas
1e-4…0.02, 1000 steps) as diffsolve's DiscreteDDPM — the same held-out x_T at t_max (training step 999) and
one float64 reference at t_min (training step 0, σ̄ = 0.0100). Every method ends at t_min:
- diffusers: DPMSolverMultistep (2M/3M, dpmsolver++), DPMSolverSinglestep (order 2/3), UniPC (bh1/bh2,
  order 2/3), Euler and DDIM, each with its default timestep spacing and with Karras sigmas, ending at
  `final_sigmas_type="sigma_min"` (DDIM: set_alpha_to_one=False); its float32 coefficients are kept.
- k-diffusion: euler, heun, dpm_2, lms, dpmpp_2m on its karras, exponential and polyexponential σ̄ grids
  from σ̄_max to σ̄_min (no trailing 0); the denoiser D(x̄, σ̄) = x̄ − σ̄ ε(x̄, σ̄). Two-stage methods get
  ⌊NFE/2⌋ steps.
- diffsolve: the best standard configuration (heldout.STANDARD on logsnr/time/quadratic/karras) and
  the tuned configurations (diffsolve.tuning.tune on training draws of seed --train-seed, never the
  held-out ones).
Relative error ‖x − ref‖/‖ref‖ on the held-out draws (seed --heldout-seed, n --n-eval).

Checked (exit 1 when one fails): the harness — k-diffusion's sample_dpmpp_2m on its exponential and karras σ̄ grids
(built in float64) equals diffsolve's dpmpp2m (lower_order_final off) on logsnr and karras to 1e-10 relative, so
both sides run the same algorithm on the same problem; every peer run spent the network calls it is listed with
(counted); every diffsolve error is finite.

    python -m benchmarks.peers_accuracy --problem gmm-64 --nfe 4,5,6,8,10,15,20 --out OUT
    python -m benchmarks.peers_accuracy --smoke          (tiny sizes into a temporary folder)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

import diffsolve as ds
from diffsolve.bench.metrics import rel_err
from diffsolve.problems import resolve
from diffsolve.schedules import F64
from diffsolve.tuning import tune

from .common import Claims, output_arguments, report, smoke_argument, smoke_sizes, write
from .heldout import common_arguments, config, heldout_error, solve_heldout
from .peers import MissingPeer, load_diffusers, load_k_diffusion_sampling, missing_note
from .tuned_grids import standard_side

KD_SAMPLERS = {"euler": 1, "heun": 2, "dpm_2": 2, "lms": 1, "dpmpp_2m": 1}  # evaluations per step
KD_GRIDS = ("karras", "exponential", "polyexponential")
HARNESS = {"exponential": "logsnr", "karras": "karras"}  # k-diffusion's grid → diffsolve's same grid
HARNESS_TOL = 1e-10


def diffusers_configs(d: Any) -> dict[str, tuple[Any, dict[str, Any]]]:
    """name → (scheduler class, its options), each ending at the table's first entry (t_min)."""
    end = {"final_sigmas_type": "sigma_min"}
    out: dict[str, tuple[Any, dict[str, Any]]] = {}
    for karras in (False, True):
        k = {"use_karras_sigmas": True} if karras else {}
        tag = "+karras" if karras else ""
        for order in (2, 3):
            out[f"DPMSolverMultistep {order}M{tag}"] = (d.DPMSolverMultistepScheduler,
                                                         {"solver_order": order, **k, **end})
            out[f"DPMSolverSinglestep {order}S{tag}"] = (d.DPMSolverSinglestepScheduler,
                                                          {"solver_order": order, **k, **end})
            for variant in ("bh1", "bh2"):
                out[f"UniPC {variant} p{order}{tag}"] = (d.UniPCMultistepScheduler,
                                                         {"solver_order": order, "solver_type": variant, **k, **end})
        out[f"Euler{tag}"] = (d.EulerDiscreteScheduler, {**k, **end})
    out["DDIM"] = (d.DDIMScheduler, {"set_alpha_to_one": False, "clip_sample": False})
    return out


def run_diffusers(cls: Any, options: dict[str, Any], eps: Callable[[Tensor, Tensor], Tensor],
                  schedule: ds.DiscreteDDPM, x_T: Tensor, nfe: int) -> tuple[Tensor, int]:
    """diffusers' own loop (scale_model_input, model, step) from VP-coordinate x_T; VP x at t_min and NFE spent."""
    sch = cls(**options)
    sch.set_timesteps(nfe)
    x, calls = x_T.clone() * float(sch.init_noise_sigma), 0
    for t in sch.timesteps:
        x_in = sch.scale_model_input(x, t)
        out = eps(x_in, schedule.t_from_step(torch.tensor([float(t)], dtype=F64)))
        calls += 1
        x = sch.step(out, t, x).prev_sample.to(F64)
    if float(sch.init_noise_sigma) != 1.0:  # Euler's latent is x̄ = x/α: back to VP coordinates at t_min
        x = x * float(schedule.alpha(torch.tensor(schedule.t_min, dtype=F64)))
    return x, calls


def kd_sigmas(kd: Any, grid: str, steps: int, smin: float, smax: float, float64: bool = False) -> Tensor:
    """k-diffusion's σ̄ grid of `steps` steps from smax to smin (its trailing 0 dropped); built in its own float32,
    ends set to smax and smin, or with float64=True built in float64 (for the harness check)."""
    fn = {"karras": kd.get_sigmas_karras, "exponential": kd.get_sigmas_exponential,
          "polyexponential": kd.get_sigmas_polyexponential}[grid]
    if float64:
        old = torch.get_default_dtype()
        torch.set_default_dtype(F64)
        try:
            return fn(steps + 1, smin, smax, device="cpu")[:-1]
        finally:
            torch.set_default_dtype(old)
    s = fn(steps + 1, smin, smax, device="cpu").to(F64)[:-1]
    s[0], s[-1] = smax, smin
    return s


class Side:
    """The problem on diffusers' DDPM table as every side sees it: the model, x_T, reference, both views."""

    def __init__(self, args: argparse.Namespace, table: Tensor):
        self.prob = resolve(args.problem)
        self.sched = sched = ds.DiscreteDDPM(alphas_cumprod=table.to(F64))
        self.model = self.prob.model(sched, dtype=F64)
        t0, t1 = torch.tensor(sched.t_max, dtype=F64), torch.tensor(sched.t_min, dtype=F64)
        self.smax, self.smin = float(sched.sigma_bar(t0)), float(sched.sigma_bar(t1))
        self.a0, self.a1 = float(sched.alpha(t0)), float(sched.alpha(t1))
        self.x = self.prob.x_T(args.n_eval, args.heldout_seed, sched).to(F64)
        self.ref = self.prob.reference(self.x, sched, rtol=self.prob.default_ref_tol, atol=self.prob.default_ref_tol)
        self.calls = 0

    def eps_vp(self, x_vp: Tensor, t: Tensor) -> Tensor:
        """ε at VP-coordinate x and time t (counted)."""
        self.calls += 1
        return self.model.eps_at(x_vp.to(F64), ds.points.make_point(self.sched, t))

    def denoiser(self, xbar: Tensor, sigma: Tensor) -> Tensor:
        """k-diffusion's D(x̄, σ̄) = x̄ − σ̄ ε."""
        sb = float(sigma.reshape(-1)[0])
        t = self.sched.t_from_sigma_bar(torch.tensor([sb], dtype=F64))
        return xbar - sb * self.eps_vp(xbar / math.sqrt(1 + sb * sb), t)

    def kd_run(self, kd: Any, name: str, sigmas: Tensor) -> tuple[Tensor, int]:
        """k-diffusion's sampler `name` on `sigmas` from x̄_T: VP x at t_min and the network calls it made."""
        before = self.calls
        out = getattr(kd, f"sample_{name}")(self.denoiser, self.x / self.a0, sigmas, disable=True)
        return out * self.a1, self.calls - before


def peer_sides(side: Side, kd: Any, peers: dict[str, Any], nfe: int) -> dict[str, dict[str, Any]]:
    """Both peers at `nfe`: 'name / grid' (k-diffusion) and 'name' (diffusers) → error, counted NFE, budget."""
    out: dict[str, dict[str, Any]] = {"kdiffusion": {}, "diffusers": {}}
    for name, per_step in KD_SAMPLERS.items():
        steps = nfe // per_step
        for grid in KD_GRIDS:
            x, calls = side.kd_run(kd, name, kd_sigmas(kd, grid, steps, side.smin, side.smax))
            out["kdiffusion"][f"{name} / {grid}"] = {"err": rel_err(x, side.ref), "nfe": steps * per_step,
                                                     "calls": calls}
    for name, (cls, opts) in peers.items():
        try:
            x, calls = run_diffusers(cls, opts, side.eps_vp, side.sched, side.x, nfe)
        except Exception as e:  # a configuration the scheduler refuses at this NFE (reported, not fatal)
            out["diffusers"][name] = {"err": None, "error": f"{type(e).__name__}: {e}"[:200]}
            continue
        e = rel_err(x, side.ref)
        out["diffusers"][name] = {"err": e if math.isfinite(e) else None, "nfe": calls}
    return out


def harness(side: Side, kd: Any, nfe: int) -> dict[str, float]:
    """k-diffusion's dpmpp_2m on its float64 grids vs diffsolve's dpmpp2m on the same grid: relative difference."""
    out = {}
    for kd_grid, grid in HARNESS.items():
        theirs, _ = side.kd_run(kd, "dpmpp_2m", kd_sigmas(kd, kd_grid, nfe, side.smin, side.smax, float64=True))
        mine = solve_heldout(side.model, side.x, "dpmpp2m", {"lower_order_final": False}, grid, nfe)
        out[f"dpmpp_2m / {kd_grid} vs dpmpp2m / {grid}"] = rel_err(theirs, mine)
    return out


def run(args: argparse.Namespace, out: Any) -> list[dict[str, Any]]:
    kd, kd_note = load_k_diffusion_sampling()
    diffusers = load_diffusers()
    side = Side(args, diffusers.DDIMScheduler().alphas_cumprod)
    print(f"{side.prob.name} on diffusers' DDPM table; {kd_note}; diffusers {diffusers.__version__}", flush=True)
    peers = diffusers_configs(diffusers)
    rows = []
    for nfe in args.nfe:
        row: dict[str, Any] = {"problem": side.prob.name, "nfe": nfe, **peer_sides(side, kd, peers, nfe)}
        row["standard"] = standard_side(side.model, side.x, side.ref, args.standard, nfe)
        row["tuned"] = {}
        for text in args.tuned:
            solver, opts = config(text)
            clock = time.process_time()
            tg = tune(side.prob, solver, nfe, train_seeds=[args.train_seed], heldout_seeds=None, n=args.n_train,
                      schedule=side.sched, candidates=args.candidates, teacher_tol=args.teacher_tol,
                      max_evals=args.max_evals, progress=False, **opts)
            row["tuned"][text] = {"err": heldout_error(side.model, side.x, side.ref, solver, opts, tg.grid, nfe),
                                  "cost_nfe": tg.cost_nfe, "cpu_seconds": time.process_time() - clock}
        row["harness"] = harness(side, kd, nfe)
        rows.append(row)
        print(summary_line(row), flush=True)
        if out:
            write(out, rows, markdown)
    return rows


def check(rows: list[dict[str, Any]], claims: Claims) -> None:
    """The harness agreement, the peers' counted NFE, finite diffsolve errors."""
    for r in rows:
        at = f"NFE {r['nfe']}"
        if "harness" in r:
            for pair, diff in r["harness"].items():
                claims.check(diff <= HARNESS_TOL, f"{at}: k-diffusion {pair}: relative difference {diff:.1e} "
                                                  f"≤ {HARNESS_TOL:g}")
        else:
            claims.skip(f"{at}: the harness check", "this result file predates it")
        counted = [(k, v) for k, v in r["kdiffusion"].items() if "calls" in v]
        wrong = [f"{k} ({v['calls']} calls, listed {v['nfe']})" for k, v in counted if v["calls"] != v["nfe"]]
        wrong += [f"{k} ({v['nfe']} calls)" for k, v in r["diffusers"].items() if v.get("nfe") not in (None, r["nfe"])]
        over = [k for k, v in r["kdiffusion"].items() if v["nfe"] > r["nfe"]]
        claims.check(not wrong and not over, f"{at}: every peer run spent the NFE it is listed with, ≤ {r['nfe']} "
                                             f"({len(counted)} k-diffusion runs counted)"
                     + (f"; not so: {', '.join(wrong + over)}" if wrong or over else ""))
        errs = list(r["standard"].values()) + [t["err"] for t in r["tuned"].values()]
        claims.check(all(math.isfinite(e) for e in errs), f"{at}: all {len(errs)} diffsolve errors are finite")


def best(entries: dict[str, Any]) -> tuple[str, float]:
    """(name, error) of the smallest finite error among entries (dicts with 'err', or bare numbers)."""
    vals = [(v["err"] if isinstance(v, dict) else v, k) for k, v in entries.items()]
    vals = [(e, k) for e, k in vals if e is not None and math.isfinite(e)]
    e, k = min(vals) if vals else (math.inf, "—")
    return k, e


def summary_line(row: dict[str, Any]) -> str:
    parts = [f"NFE {row['nfe']}"]
    for side in ("kdiffusion", "diffusers", "standard", "tuned"):
        k, e = best(row[side])
        parts.append(f"{side} {k} {e:.4g}")
    return " | ".join(parts)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| NFE | best k-diffusion | rel. err | best diffusers | rel. err | diffsolve best standard | rel. err | "
             "diffsolve tuned | rel. err | tuned / best peer |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        (kk, ke), (dk, de), (sk, se), (tk, te) = (best(r[s]) for s in ("kdiffusion", "diffusers", "standard",
                                                                         "tuned"))
        lines.append(f"| {r['nfe']} | {kk} | {ke:.3g} | {dk} | {de:.3g} | {sk} | {se:.3g} | {tk} | {te:.3g} | "
                     f"{te / min(ke, de):.2f}× |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(p)
    output_arguments(p)
    smoke_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    claims = Claims("peers_accuracy", args.smoke)
    smoke_sizes(args, problem="gmm-2d", nfe=[6], standard=["dpmpp2m:lower_order_final=1", "ipndm:order=3"],
                tuned=["ipndm:order=3"], n_eval=16, n_train=16, candidates=16, max_evals=16)
    torch.set_num_threads(1)
    try:
        return report(args, claims, lambda out: run(args, out), markdown, check)
    except MissingPeer as e:
        if not args.smoke:
            print(f"{missing_note(e)}; this comparison needs both peers", file=sys.stderr)
            return 2
        claims.skip("the comparison with k-diffusion and diffusers", missing_note(e))
        return claims.exit_status()


if __name__ == "__main__":
    sys.exit(main())
