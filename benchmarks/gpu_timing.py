"""GPU timings: per-step solver overhead and whole sampling time against diffusers, eager and CUDA graph.

Run:  python -m benchmarks.gpu_timing --out benchmarks/results/gpu   (under 5 minutes on one GPU)
      python -m benchmarks.gpu_timing --smoke                         (tiny sizes, any device: checks the script)
      python -m benchmarks.gpu_timing --markdown benchmarks/results/gpu/gpu_check.json   (tables for RESULTS.md)

Per-step solver overhead = (sampling time − NFE × forward time) / steps, with a diffusers UNet2DModel
(random weights, DDPM-CIFAR10 layout, 35.7 M parameters, 32×32, bf16) and, separately, with a
trivial one-kernel model (the solver's own cost). diffusers' schedulers run the same algorithms on
the same timesteps in the same process.

Checked (exit 1 when one fails; --markdown checks a saved file): every solve spends the NFE asked; on CUDA, a
CUDA-graph replay equals the eager loop to 1e-5, and diffsolve's per-step time with the trivial model, eager and
graph, is ≤ 0.25× diffusers' scheduler step (the target in benchmarks/RESULTS.md; not asserted in smoke runs). What
this script used to check besides (sync-free loops, graph replay, peak memory) is asserted by
`pytest -m gpu tests/gpu`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any

import torch

import diffsolve as ds
from diffsolve.bench.timing import interleaved_medians

from .common import Claims, out_path, read_json, smoke_argument
from .peers import MissingPeer, load_diffusers, missing_note

OVERHEAD_TARGET = 0.25  # diffsolve's per-step overhead (trivial model) / diffusers' scheduler step, on CUDA
GRAPH_TOL = 1e-5
ALGOS = {
    # diffsolve solver name → (diffusers scheduler class name, its kwargs)
    "ddim": ("DDIMScheduler", {}),
    "dpmpp2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": ("UniPCMultistepScheduler", {}),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, repeats: int, fn, *args, **kwargs) -> float:
    """Median wall seconds of fn(*args, **kwargs) over `repeats` runs after one warm-up run."""
    return interleaved_medians([lambda: fn(*args, **kwargs)], repeats, lambda: sync(device))[0]


def make_unet(smoke: bool, device: torch.device, dtype: torch.dtype):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    if smoke:
        unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                           down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                           layers_per_block=1, norm_num_groups=8)
    else:
        unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
                           down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
    return unet.to(device=device, dtype=dtype).eval()


def diffusers_scheduler(algo: str):
    import diffusers

    cls_name, kwargs = ALGOS[algo]
    return getattr(diffusers, cls_name)(num_train_timesteps=1000, beta_schedule="linear", **kwargs)


def run_diffusers(net, algo: str, x: torch.Tensor, steps: int) -> torch.Tensor:
    sched = diffusers_scheduler(algo)
    sched.set_timesteps(steps, device=x.device)
    for t in sched.timesteps:
        x = sched.step(net(x, t), t, x).prev_sample
    return x


def markdown(report: dict) -> str:
    """The report's timing rows and checks as markdown tables."""
    lines = [f"{report['device']}, torch {report['torch']}, diffusers {report['diffusers']}, {report['dtype']}, "
             f"UNet2DModel {report['unet_params_M']} M parameters (random weights), 32×32.", ""]
    for net in ("trivial", "unet"):
        if net == "trivial":
            lines.append("Solver overhead per step with a trivial model (x·0.5, one kernel), ms per step "
                         "(ratio to diffusers' scheduler step):")
        else:
            lines.append("Whole sampling time with the UNet, ms (forward alone, timed with a sync after each "
                         "call, in the last column):")
        lines += ["", "| algo | batch | NFE | diffusers | diffsolve eager | diffsolve CUDA graph |"
                  + (" UNet forward |" if net == "unet" else ""),
                  "|---|---|---|---|---|---|" + ("---|" if net == "unet" else "")]
        for r in report["rows"]:
            if r["net"] != net:
                continue
            if net == "trivial":
                d, e, g = (r[f"{k}_ms"] / r["nfe"] for k in ("diffusers", "eager", "graph"))
                lines.append(f"| {r['algo']} | {r['batch']} | {r['nfe']} | {d:.3f} | {e:.3f} ({e / d:.2f}×) | "
                             f"{g:.3f} ({g / d:.2f}×) |")
            else:
                d, e, g = (r[f"{k}_ms"] for k in ("diffusers", "eager", "graph"))
                lines.append(f"| {r['algo']} | {r['batch']} | {r['nfe']} | {d:.1f} | {e:.1f} | {g:.1f} | "
                             f"{r['forward_ms']:.1f} |")
        lines.append("")
    if report.get("checks"):  # reports written before the checks moved to tests/gpu
        lines += ["| check | result |", "|---|---|"]
    for k, v in report.get("checks", {}).items():
        if isinstance(v, dict):
            v = (f"sampling peak {v['sampling_peak_MiB']:.1f} MiB vs forward peak {v['forward_peak_MiB']:.1f} MiB: "
                 f"{v['extra_state_copies']:.2f} state copies (order + 2 = {v['allowed_copies_order_plus_2']:.0f})")
        lines.append(f"| {k} | {v} |")
    return "\n".join(lines)


def solve_row(net_name: str, net: Any, x: torch.Tensor, fwd: float, algo: str, nfe: int,
              repeats: int) -> dict[str, Any]:
    """Time diffusers, diffsolve eager (and on CUDA the graph) on `algo` at `nfe`; the NFE diffsolve spent and, on
    CUDA, the largest difference between graph and eager."""
    device = x.device
    steps = ds.get_solver(algo).steps_for(nfe)  # same number of network calls; a step's cost does not depend on
    grid = ds.grids.logsnr(ds.DiscreteDDPM(), steps)  # where it lies
    dyn = ds.ode(ds.EpsModel(net, grid.schedule), "lambda")
    row = {"net": net_name, "batch": x.shape[0], "algo": algo, "nfe": nfe, "steps": steps, "forward_ms": fwd * 1e3}
    t_diff = timed(device, repeats, run_diffusers, net, algo, x, nfe)
    sol = ds.solve(dyn, x, grid, algo)
    t_eager = timed(device, repeats, ds.solve, dyn, x, grid, algo)
    row["diffsolve_nfe"] = sol.nfe
    for label, secs in (("diffusers", t_diff), ("eager", t_eager)):
        row[f"{label}_ms"] = secs * 1e3
        row[f"{label}_overhead_ms_per_step"] = (secs - nfe * fwd) / nfe * 1e3
    if device.type == "cuda":
        t_graph = timed(device, repeats, ds.solve, dyn, x, grid, algo, cuda_graph=True)
        row["graph_ms"] = t_graph * 1e3
        row["graph_overhead_ms_per_step"] = (t_graph - nfe * fwd) / nfe * 1e3
        g = ds.solve(dyn, x, grid, algo, cuda_graph=True).x.float()
        e = ds.solve(dyn, x, grid, algo).x.float()
        row["graph_vs_eager_max_abs"] = (g - e).abs().max().item()
    return row


def check(report: dict[str, Any], claims: Claims) -> None:
    """NFE spent as asked; on CUDA (rows with graph timings) graph = eager, and the trivial model's per-step time,
    eager and graph, ≤ OVERHEAD_TARGET × diffusers'."""
    rows = report["rows"]
    for r in rows:
        at = f"{r['net']} {r['algo']} batch {r['batch']} NFE {r['nfe']}"
        claims.check(r["diffsolve_nfe"] == r["nfe"], f"{at}: {r['diffsolve_nfe']} NFE spent, {r['nfe']} asked")
        if "graph_vs_eager_max_abs" in r:
            claims.check(r["graph_vs_eager_max_abs"] <= GRAPH_TOL,
                         f"{at}: CUDA graph = eager to {r['graph_vs_eager_max_abs']:.1e} ≤ {GRAPH_TOL:g}")
    if not any("graph_ms" in r for r in rows):
        claims.skip(f"per-step overhead ≤ {OVERHEAD_TARGET:g}× diffusers'", "the target is a CUDA one; no CUDA here")
        return
    for r in (r for r in rows if r["net"] == "trivial"):
        for path in ("eager", "graph"):
            ratio = r[f"{path}_ms"] / r["diffusers_ms"]
            claims.check(ratio <= OVERHEAD_TARGET, f"{r['algo']} batch {r['batch']} NFE {r['nfe']}: {path} step "
                                                   f"{ratio:.2f}× diffusers' ≤ {OVERHEAD_TARGET:g}×",
                         full_size_only=True)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markdown", default=None, help="print the tables of a saved gpu_check.json, check its claims")
    ap.add_argument("--out", default=None, help="directory for gpu_check.json")
    ap.add_argument("--repeats", type=int, default=5)
    smoke_argument(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    claims = Claims("gpu_timing", args.smoke)
    if args.markdown:
        saved = read_json(args.markdown)
        print(markdown(saved))
        check(saved, claims)
        return claims.exit_status()
    try:
        diffusers = load_diffusers()
    except MissingPeer as e:
        if not args.smoke:
            print(missing_note(e), file=sys.stderr)
            return 2
        claims.skip("the timings beside diffusers", missing_note(e))
        return claims.exit_status()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    batches, nfes = ((2,), (5,)) if args.smoke else ((16, 256), (10, 20))
    repeats = 1 if args.smoke else args.repeats
    report: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "dtype": str(dtype), "rows": [], "diffusers": diffusers.__version__,
    }
    unet = make_unet(args.smoke, device, dtype)
    report["unet_params_M"] = round(sum(p.numel() for p in unet.parameters()) / 1e6, 2)
    size = unet.config.sample_size

    def unet_eps(x, t):
        return unet(x, t).sample

    def trivial(x, t):
        return x * 0.5

    with torch.no_grad():
        # timings (the checks — sync-free loops, graph = eager, peak memory — are tests/gpu/test_gpu_solvers.py)
        for net_name, net in (("unet", unet_eps), ("trivial", trivial)):
            for batch in batches:
                x = torch.randn(batch, 3, size, size, device=device, dtype=dtype,
                                generator=torch.Generator(device).manual_seed(0))
                fwd = timed(device, repeats * 4, net, x, torch.full((batch,), 500.0, device=device))
                for algo in (a for a in ALGOS if a in ds.SOLVERS):
                    for nfe in nfes:
                        report["rows"].append(solve_row(net_name, net, x, fwd, algo, nfe, repeats))
                        print(json.dumps(report["rows"][-1]), flush=True)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))
    out = out_path(args, "gpu_timing")
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    check(report, claims)
    return claims.exit_status()


if __name__ == "__main__":
    sys.exit(main())
