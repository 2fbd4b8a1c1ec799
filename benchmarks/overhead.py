"""Solver overhead per NFE on the CPU, side by side in one process: diffsolve against peer implementations.

A trivial network (output 0·x), a batch of 256 × 64 float32 states, one thread, 20 NFE, the step grid built
inside every timed call, median of 11 interleaved repeats (after one warm-up; the order rotates every round, so
no implementation always runs first, on caches the others filled); µs per counted NFE:

  dpmpp2m  diffsolve `sample(solver="dpmpp2m", variable="lambda")`  vs k-diffusion `sample_dpmpp_2m`
  heun     diffsolve `sample(solver="heun", variable="sigma")`      vs k-diffusion `sample_heun` (no churn)
  ddim     diffsolve `sample(solver="ddim")`                         vs diffusers EulerDiscreteScheduler and
                                                                        DDIMScheduler (set_timesteps + loop)
  unipc    diffsolve `sample(solver="unipc")`                        vs diffusers UniPCMultistepScheduler

k-diffusion gets its own grid builder per call (`get_sigmas_exponential`, uniform in log σ̄ = diffsolve's
logSNR grid, same σ̄ range, ending at σ̄_min like diffsolve's); diffusers its `set_timesteps`. Beside each
pair, a bare loop of the same tensor operations with precomputed Python floats (no grid, no checks) is the
floor of what the arithmetic costs. Every implementation's NFE is counted on an untimed run and must equal
the budget.

Checked (exit 1 when one fails): every implementation spends exactly the NFE budget and returns a finite sample; and
diffsolve's µs per NFE with the grid built per call is ≤ --max-ratio (0.5) × the fastest peer's for every pair (the
invariant of issue 19 for dpmpp2m, heun and ddim; asserted at full size only). Exit 2 when a peer is not installed
(in smoke mode its pairs are left out with a note).

Peers: `pip install diffusers` and `pip install --no-deps k-diffusion` (its own dependencies pull torchvision
and a newer torch: never let them in). Only k_diffusion/sampling.py is loaded, by file path.

With --warm, each pair also times diffsolve's `solve()` on a grid built once (what the grid costs per call).
Times are this process's CPU time by default (--clock cpu): on a shared machine, wall time also counts the waits
for a free core, which fall on whichever run is unlucky; --clock wall times the wall clock.

Run (from the repository root):
  OMP_NUM_THREADS=1 python -m benchmarks.overhead [--only dpmpp2m,heun] [--nfe 20] [--warm] [--clock cpu|wall]
  python -m benchmarks.overhead --smoke          (tiny sizes, one repeat: checks NFE and finiteness)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import diffsolve as ds

from .common import Claims, out_path, smoke_argument, smoke_sizes, write
from .peers import MissingPeer, load_diffusers, load_k_diffusion_sampling, missing_note

Net = Callable[[Tensor, Tensor], Tensor]
VARIABLE = {"dpmpp2m": "lambda", "heun": "sigma", "ddim": "lambda", "unipc": "lambda"}  # diffsolve's, per pair
PEER = {"dpmpp2m": "k-diffusion", "heun": "k-diffusion", "ddim": "diffusers", "unipc": "diffusers"}


def trivial_net(x: Tensor, t: Tensor) -> Tensor:
    """The trivial network: 0·x (one kernel)."""
    return 0 * x


# ---- the runs -----------------------------------------------------------------------------------------------
@dataclass
class Setup:
    """What every run shares: the DDPM schedule (diffusers' default table), x_T, the NFE budget."""

    schedule: ds.DiscreteDDPM
    x_T: Tensor
    nfe: int

    def coefficients(self, steps: int) -> dict[str, list[float]]:
        """α, σ, σ̄, λ at the nodes of the logSNR grid, as Python floats (for the bare loops)."""
        t = ds.grids.logsnr(self.schedule, steps).t
        s = self.schedule
        return {k: [float(v) for v in f(t)] for k, f in
                (("alpha", s.alpha), ("sigma", s.sigma), ("sigma_bar", s.sigma_bar), ("lam", s.lam))}


@dataclass
class Impl:
    """One implementation: `make(net)` returns the timed run; kind is diffsolve, peer or floor."""

    label: str
    kind: str
    make: Callable[[Net], Callable[[], Tensor]]


def diffsolve_impl(setup: Setup, solver: str, variable: str, warm: bool = False) -> Impl:
    """`sample()` (grid built per call), or with warm=True `solve()` on a grid built once (its plan cached)."""

    def make(net: Net) -> Callable[[], Tensor]:
        model = ds.wrap(net, setup.schedule, "eps")
        if warm:
            grid = ds.grids.logsnr(setup.schedule, ds.get_solver(solver).steps_for(setup.nfe))
            dyn = ds.ode(model, variable)
            return lambda: ds.solve(dyn, setup.x_T, grid, solver).x
        return lambda: ds.sample(model, setup.x_T, solver=solver, nfe=setup.nfe, grid="logsnr", variable=variable).x

    label = f"diffsolve {solver} ({ {'lambda': 'λ', 'sigma': 'σ̄'}[variable] })"
    return Impl(label + (", grid reused" if warm else ""), "diffsolve", make)


def k_diffusion_impl(setup: Setup, sampling: types.ModuleType, name: str, steps: int) -> Impl:
    """k-diffusion's sampler on its denoiser view (D = x̂0 in x̄ = x/α, here 0·x) and its own σ grid."""
    s_max, s_min = (float(setup.schedule.sigma_bar(t)) for t in (setup.schedule.t_max, setup.schedule.t_min))
    x_bar = setup.x_T / float(setup.schedule.alpha(setup.schedule.t_max))

    def make(net: Net) -> Callable[[], Tensor]:
        fn = getattr(sampling, name)

        def run() -> Tensor:
            sigmas = sampling.get_sigmas_exponential(steps + 1, s_min, s_max)[:-1]  # drop the appended 0
            return fn(net, x_bar, sigmas, disable=True)

        return run

    return Impl(f"k-diffusion {name}", "peer", make)


def diffusers_impl(setup: Setup, scheduler_name: str, **config) -> Impl:
    """diffusers' documented loop: set_timesteps, then scale_model_input, net, step for every timestep."""
    scheduler = getattr(load_diffusers(), scheduler_name)(**config)

    def make(net: Net) -> Callable[[], Tensor]:
        def run() -> Tensor:
            scheduler.set_timesteps(setup.nfe)
            x = setup.x_T * scheduler.init_noise_sigma
            for t in scheduler.timesteps:
                x = scheduler.step(net(scheduler.scale_model_input(x, t), t), t, x).prev_sample
            return x

        return run

    return Impl(f"diffusers {scheduler_name}", "peer", make)


def bare_ddim(setup: Setup) -> Impl:
    """x ← (α'/α) x + α'(σ̄' − σ̄) ε."""
    c = setup.coefficients(setup.nfe)
    a = [c["alpha"][i + 1] / c["alpha"][i] for i in range(setup.nfe)]
    b = [c["alpha"][i + 1] * (c["sigma_bar"][i + 1] - c["sigma_bar"][i]) for i in range(setup.nfe)]

    def make(net: Net) -> Callable[[], Tensor]:
        def run() -> Tensor:
            x = setup.x_T
            for i in range(setup.nfe):
                x = a[i] * x + b[i] * net(x, x)
            return x

        return run

    return Impl("bare loop (DDIM update, precomputed floats)", "floor", make)


def bare_dpmpp2m(setup: Setup) -> Impl:
    """x̂0 = (x − σ ε)/α; x ← (σ'/σ) x − α'(e^{−h} − 1)[(1 + 1/2r) x̂0 − (1/2r) x̂0_prev] (first step: x̂0 only)."""
    n, c = setup.nfe, setup.coefficients(setup.nfe)
    h = [c["lam"][i + 1] - c["lam"][i] for i in range(n)]
    ratio = [c["sigma"][i + 1] / c["sigma"][i] for i in range(n)]
    phi = [-c["alpha"][i + 1] * math.expm1(-h[i]) for i in range(n)]
    cur = [phi[0]] + [phi[i] * (1 + h[i] / (2 * h[i - 1])) for i in range(1, n)]
    prev = [0.0] + [-phi[i] * h[i] / (2 * h[i - 1]) for i in range(1, n)]
    inv_a = [1 / c["alpha"][i] for i in range(n)]
    s_a = [c["sigma"][i] / c["alpha"][i] for i in range(n)]

    def make(net: Net) -> Callable[[], Tensor]:
        def run() -> Tensor:
            x, d_prev = setup.x_T, None
            for i in range(n):
                d = inv_a[i] * x - s_a[i] * net(x, x)
                x = ratio[i] * x + cur[i] * d if d_prev is None else ratio[i] * x + cur[i] * d + prev[i] * d_prev
                d_prev = d
            return x

        return run

    return Impl("bare loop (DPM-Solver++(2M) update, precomputed floats)", "floor", make)


def bare_heun(setup: Setup) -> Impl:
    """In x̄ = x/α: d = ε(α x̄); x̄₂ = x̄ + Δσ̄ d; x̄ ← x̄ + Δσ̄ (d + ε(α' x̄₂))/2."""
    steps = setup.nfe // 2
    c = setup.coefficients(steps)
    a, sb = c["alpha"], c["sigma_bar"]
    dsb = [sb[i + 1] - sb[i] for i in range(steps)]

    def make(net: Net) -> Callable[[], Tensor]:
        def run() -> Tensor:
            x = setup.x_T * (1 / a[0])
            for i in range(steps):
                d = net(a[i] * x, x)
                x2 = x + dsb[i] * d
                x = x + (0.5 * dsb[i]) * (d + net(a[i + 1] * x2, x2))
            return a[-1] * x

        return run

    return Impl("bare loop (Heun update in σ̄, precomputed floats)", "floor", make)


def load_peers(only: list[str], smoke: bool) -> tuple[list[str], types.ModuleType | None, list[str]]:
    """(the pairs whose peer loads, k-diffusion's sampling module, notes). A missing peer raises MissingPeer,
    except in smoke mode, where its pairs are left out with a note."""
    kd, notes, kept = None, [], []
    for name in only:
        try:
            if PEER[name] == "k-diffusion" and kd is None:
                kd, note = load_k_diffusion_sampling()
                notes.append(note)
            elif PEER[name] == "diffusers":
                version = f"diffusers {load_diffusers().__version__}"
                notes += [] if version in notes else [version]
            kept.append(name)
        except MissingPeer as e:
            if not smoke:
                raise
            notes.append(f"{name} left out: {missing_note(e)}")
    return kept, kd, notes


def pairs(setup: Setup, only: list[str], kd: types.ModuleType | None, warm: bool = False) -> dict[str, list[Impl]]:
    """The comparisons asked for: name → implementations (diffsolve first, then the peers and the bare loop)."""
    peers: dict[str, Callable[[], list[Impl]]] = {
        "dpmpp2m": lambda: [k_diffusion_impl(setup, kd, "sample_dpmpp_2m", setup.nfe), bare_dpmpp2m(setup)],
        "heun": lambda: [k_diffusion_impl(setup, kd, "sample_heun", setup.nfe // 2), bare_heun(setup)],
        "ddim": lambda: [diffusers_impl(setup, "EulerDiscreteScheduler"),
                         diffusers_impl(setup, "DDIMScheduler", clip_sample=False), bare_ddim(setup)],
        "unipc": lambda: [diffusers_impl(setup, "UniPCMultistepScheduler")],
    }
    groups = {}
    for name in only:
        ours = [diffsolve_impl(setup, name, VARIABLE[name])]
        if warm:  # the same solve on a grid built once
            ours.append(diffsolve_impl(setup, name, VARIABLE[name], warm=True))
        groups[name] = ours + peers[name]()
    return groups


# ---- measuring ---------------------------------------------------------------------------------------------
def counted_nfe(impl: Impl) -> tuple[int, bool]:
    """(network calls of one untimed run, whether its output is finite)."""
    calls = [0]

    def counting(x: Tensor, t: Tensor) -> Tensor:
        calls[0] += 1
        return trivial_net(x, t)

    out = impl.make(counting)()
    return calls[0], bool(torch.isfinite(out).all())


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def measure(group: list[Impl], setup: Setup, repeats: int, clock: str = "cpu") -> tuple[list[float], list[str]]:
    """µs per NFE of every implementation of one pair (interleaved), and what went wrong."""
    problems = []
    for impl in group:
        nfe, finite = counted_nfe(impl)
        if nfe != setup.nfe or not finite:
            problems.append(f"{impl.label}: {nfe} network calls (budget {setup.nfe}), finite output: {finite}")
    runs = [impl.make(trivial_net) for impl in group]
    with torch.no_grad():
        seconds = rotated_medians(runs, repeats, CLOCKS[clock])
    return [1e6 * s / setup.nfe for s in seconds], problems


def rotated_medians(runs: list[Callable[[], Tensor]], repeats: int, clock: Callable[[], float]) -> list[float]:
    """Median seconds (by `clock`) of each run over `repeats` interleaved rounds, the order rotated every round.

    The first run of a round starts on caches the previous round's other code filled (measured here: ~15–20 %
    slower than the same call later in the round), so every run takes every position equally often."""
    n = len(runs)
    for run in runs:  # warm-up
        run()
    times: list[list[float]] = [[] for _ in runs]
    for r in range(repeats):
        for i in [(r + j) % n for j in range(n)]:
            start = clock()
            runs[i]()
            times[i].append(clock() - start)
    return [statistics.median(t) for t in times]


def parser() -> argparse.ArgumentParser:
    names = list(VARIABLE)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(names), help=f"comma-separated pairs among {', '.join(names)}")
    ap.add_argument("--nfe", type=int, default=20, help="network evaluations per sample (even, for Heun)")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warm", action="store_true", help="add diffsolve rows that reuse a grid built once")
    ap.add_argument("--clock", choices=list(CLOCKS), default="cpu",
                    help="cpu: this process's CPU time (a shared machine's waits for a core left out); wall: wall time")
    ap.add_argument("--max-ratio", type=float, default=0.5,
                    help="the claim checked: diffsolve (grid built per call) ≤ this × the fastest peer")
    ap.add_argument("--out", default=None, help="also write OUT.json (the rows) and OUT.md (the table)")
    smoke_argument(ap)
    return ap


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| pair | implementation | µs / NFE | ratio to the fastest peer |", "|---|---|---:|---:|"]
    lines += [f"| {r['pair']} | {r['implementation']} | {r['us_per_nfe']:.1f} | {r['ratio']:.2f}× |" for r in rows]
    return "\n".join(lines)


def time_pairs(groups: dict[str, list[Impl]], setup: Setup, args: argparse.Namespace,
               claims: Claims) -> list[dict[str, Any]]:
    """Time every pair, print its rows, check NFE and finiteness, and diffsolve's ratio to the fastest peer."""
    rows = []
    print("\n| pair | implementation | µs / NFE | ratio to the fastest peer |\n|---|---|---:|---:|")
    for name, group in groups.items():
        per_nfe, problems = measure(group, setup, args.repeats, args.clock)
        claims.check(not problems, f"{name}: every implementation spent {setup.nfe} NFE and returned a finite sample"
                     + (f"; not so: {'; '.join(problems)}" if problems else ""))
        fastest = min(v for impl, v in zip(group, per_nfe) if impl.kind == "peer")
        for impl, v in zip(group, per_nfe):
            rows.append({"pair": name, "implementation": impl.label, "kind": impl.kind, "us_per_nfe": v,
                         "ratio": v / fastest})
            print(f"| {name} | {impl.label} | {v:.1f} | {v / fastest:.2f}× |", flush=True)
        ratio = per_nfe[0] / fastest
        claims.check(ratio <= args.max_ratio, f"{name}: {group[0].label} (grid built per call) {ratio:.2f}× the "
                                              f"fastest peer ≤ {args.max_ratio:g}×", full_size_only=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    names = list(VARIABLE)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in only if n not in names]
    if unknown or not only or args.nfe < 2 or args.nfe % 2:
        ap.error(f"--only takes pairs among {names} (got {args.only!r}); --nfe must be even and ≥ 2 (got {args.nfe})")
    smoke_sizes(args, nfe=4, repeats=1, batch=8, dim=4)
    claims = Claims("overhead", args.smoke)
    torch.set_num_threads(args.threads)
    try:
        only, kd, notes = load_peers(only, args.smoke)
    except MissingPeer as e:
        print(f"{missing_note(e)}  (or leave its pairs out with --only)", file=sys.stderr)
        return 2
    x_T = torch.randn(args.batch, args.dim, generator=torch.Generator().manual_seed(0))
    setup = Setup(ds.DiscreteDDPM(), x_T, args.nfe)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch} × {args.dim} float32, "
          f"NFE {args.nfe}, grid built per call, median of {args.repeats} interleaved repeats (rotated order), "
          f"{args.clock} time"
          + (f"; load average {load[0]:.1f} at start" if load else ""))
    for note in notes:
        print(f"peer: {note}")
    rows = time_pairs(pairs(setup, only, kd, args.warm), setup, args, claims)
    if load:
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    out = out_path(args, "overhead")
    if out:
        write(out, rows, markdown)
    return claims.exit_status()


if __name__ == "__main__":
    sys.exit(main())
