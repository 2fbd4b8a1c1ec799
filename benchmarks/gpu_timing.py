"""GPU timings: per-step solver overhead and whole sampling time against diffusers, eager and CUDA graph.

Run:  python benchmarks/gpu_timing.py --out benchmarks/results/gpu   (under 5 minutes on one GPU)
      python benchmarks/gpu_timing.py --smoke                         (tiny sizes, any device: checks the script)
      python benchmarks/gpu_timing.py --markdown benchmarks/results/gpu/gpu_check.json   (tables for RESULTS.md)

Per-step solver overhead = (sampling time − NFE × forward time) / steps, with a diffusers UNet2DModel
(random weights, DDPM-CIFAR10 layout, 35.7 M parameters, 32×32, bf16) and, separately, with a
trivial one-kernel model (the solver's own cost). diffusers' schedulers run the same algorithms on
the same timesteps in the same process. Exits 1 when a solve spends another NFE than asked or a
CUDA-graph replay differs from the eager loop by more than 1e-5. What this script used to check besides
(sync-free loops, graph replay, peak memory) is asserted by `pytest -m gpu tests/gpu`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import diffsolve as ds  # noqa: E402
from diffsolve.bench.timing import interleaved_medians  # noqa: E402

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs")
    ap.add_argument("--markdown", default=None, help="print the tables of a saved gpu_check.json and exit")
    ap.add_argument("--out", default=None, help="directory for gpu_check.json")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    batches, nfes = ((2,), (5,)) if args.smoke else ((16, 256), (10, 20))
    repeats = 1 if args.smoke else args.repeats
    report: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "dtype": str(dtype), "rows": [],
    }
    import diffusers

    report["diffusers"] = diffusers.__version__
    schedule = ds.DiscreteDDPM()
    unet = make_unet(args.smoke, device, dtype)
    report["unet_params_M"] = round(sum(p.numel() for p in unet.parameters()) / 1e6, 2)
    size = unet.config.sample_size
    failures: list[str] = []

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
                t_in = torch.full((batch,), 500.0, device=device, dtype=torch.float32)
                fwd = timed(device, repeats * 4, net, x, t_in)
                for algo in ALGOS:
                    if algo not in ds.SOLVERS:
                        continue
                    for nfe in nfes:
                        # same number of network calls; timing does not depend on where the steps lie
                        steps = ds.get_solver(algo).steps_for(nfe)
                        grid = ds.grids.logsnr(schedule, steps)
                        model = ds.EpsModel(net, schedule)
                        dyn = ds.ode(model, "lambda")
                        row = {"net": net_name, "batch": batch, "algo": algo, "nfe": nfe, "steps": steps,
                               "forward_ms": fwd * 1e3}
                        t_diff = timed(device, repeats, run_diffusers, net, algo, x, nfe)
                        sol = ds.solve(dyn, x, grid, algo)
                        if sol.nfe != nfe:
                            failures.append(f"{algo} spent {sol.nfe} NFE, asked {nfe}")
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
                            if row["graph_vs_eager_max_abs"] > 1e-5:
                                failures.append(f"{algo} batch {batch} NFE {nfe}: graph differs from eager by "
                                                f"{row['graph_vs_eager_max_abs']:.1e}")
                        report["rows"].append(row)
                        print(json.dumps(row), flush=True)

    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    for f in failures:
        print("FAILED:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
