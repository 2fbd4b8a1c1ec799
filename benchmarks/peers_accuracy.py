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
- diffsolve: the best standard configuration (tuned_grids.STANDARD on logsnr/time/quadratic/karras) and
  the tuned configurations (diffsolve.tuning.tune on training draws of seed --train-seed, never the
  held-out ones).
Relative error ‖x − ref‖/‖ref‖ on the held-out draws (seed --heldout-seed, n --n-eval).

    PYTHONPATH=. python benchmarks/peers_accuracy.py --problem gmm-64 --nfe 4,5,6,8,10,15,20 --out OUT
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import load_k_diffusion_sampling  # noqa: E402
from tuned_grids import common_arguments, config, heldout_error, output_arguments, rendered, write  # noqa: E402

import diffsolve as ds  # noqa: E402
from diffsolve.bench.metrics import rel_err  # noqa: E402
from diffsolve.problems import resolve  # noqa: E402
from diffsolve.schedules import F64  # noqa: E402
from diffsolve.tuning import STANDARD_GRIDS, tune  # noqa: E402

KD_SAMPLERS = {"euler": 1, "heun": 2, "dpm_2": 2, "lms": 1, "dpmpp_2m": 1}  # evaluations per step
KD_GRIDS = ("karras", "exponential", "polyexponential")


def diffusers_configs() -> dict[str, tuple[Any, dict[str, Any]]]:
    """name → (scheduler class, its options), each ending at the table's first entry (t_min)."""
    import diffusers as d

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


def kd_sigmas(kd: Any, grid: str, steps: int, smin: float, smax: float) -> Tensor:
    """k-diffusion's σ̄ grid of `steps` steps from smax to smin (its trailing 0 dropped)."""
    fn = {"karras": kd.get_sigmas_karras, "exponential": kd.get_sigmas_exponential,
          "polyexponential": kd.get_sigmas_polyexponential}[grid]
    s = fn(steps + 1, smin, smax, device="cpu").to(F64)[:-1]
    s[0], s[-1] = smax, smin
    return s


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    kd, kd_note = load_k_diffusion_sampling()
    import diffusers

    prob = resolve(args.problem)
    sched = ds.DiscreteDDPM(alphas_cumprod=diffusers.DDIMScheduler().alphas_cumprod.to(F64))
    model = prob.model(sched, dtype=F64)
    t0, t1 = torch.tensor(sched.t_max, dtype=F64), torch.tensor(sched.t_min, dtype=F64)
    smax, smin = float(sched.sigma_bar(t0)), float(sched.sigma_bar(t1))
    a0, a1 = float(sched.alpha(t0)), float(sched.alpha(t1))
    x = prob.x_T(args.n_eval, args.heldout_seed, sched)
    ref = prob.reference(x, sched, rtol=prob.default_ref_tol, atol=prob.default_ref_tol)
    print(f"{prob.name} on diffusers' DDPM table; {kd_note}; diffusers {diffusers.__version__}", flush=True)

    def eps_vp(x_vp: Tensor, t: Tensor) -> Tensor:
        return model.eps_at(x_vp.to(F64), ds.points.make_point(sched, t))

    def denoiser(xbar: Tensor, sigma: Tensor) -> Tensor:  # k-diffusion's D(x̄, σ̄) = x̄ − σ̄ ε
        sb = float(sigma.reshape(-1)[0])
        t = sched.t_from_sigma_bar(torch.tensor([sb], dtype=F64))
        return xbar - sb * eps_vp(xbar / math.sqrt(1 + sb * sb), t)

    peers = diffusers_configs()
    rows = []
    for nfe in args.nfe:
        row: dict[str, Any] = {"problem": prob.name, "nfe": nfe, "kdiffusion": {}, "diffusers": {}, "standard": {},
                               "tuned": {}}
        for name, per_step in KD_SAMPLERS.items():
            steps = nfe // per_step
            for grid in KD_GRIDS:
                sig = kd_sigmas(kd, grid, steps, smin, smax)
                out = getattr(kd, f"sample_{name}")(denoiser, x.to(F64) / a0, sig, disable=True)
                row["kdiffusion"][f"{name} / {grid}"] = {"err": rel_err(out * a1, ref), "nfe": steps * per_step}
        for name, (cls, opts) in peers.items():
            try:
                out, calls = run_diffusers(cls, opts, eps_vp, sched, x.to(F64), nfe)
            except Exception as e:  # a configuration the scheduler refuses at this NFE (reported, not fatal)
                row["diffusers"][name] = {"err": None, "error": f"{type(e).__name__}: {e}"[:200]}
                continue
            e = rel_err(out, ref)
            row["diffusers"][name] = {"err": e if math.isfinite(e) else None, "nfe": calls}
        for text in args.standard:
            solver, opts = config(text)
            for grid in STANDARD_GRIDS:
                try:
                    row["standard"][f"{text} / {grid}"] = heldout_error(prob, model, x, ref, solver, opts, grid, nfe)
                except ds.errors.DiffsolveError:
                    continue
        for text in args.tuned:
            solver, opts = config(text)
            clock = time.process_time()
            tg = tune(prob, solver, nfe, train_seeds=[args.train_seed], heldout_seeds=None, n=args.n_train,
                      schedule=sched, **opts)
            row["tuned"][text] = {"err": heldout_error(prob, model, x, ref, solver, opts, tg.grid, nfe),
                                  "cost_nfe": tg.cost_nfe, "cpu_seconds": time.process_time() - clock}
        rows.append(row)
        print(summary_line(row), flush=True)
        if args.out:
            write(args.out, rows, markdown)
    return rows


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(p)
    output_arguments(p)
    args = p.parse_args()
    if rendered(args, markdown):
        return
    torch.set_num_threads(1)
    print(markdown(run(args)))


if __name__ == "__main__":
    main()
