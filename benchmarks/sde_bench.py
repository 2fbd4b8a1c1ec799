"""Stochastic vs deterministic samplers on gmm-64: strong and weak errors against NFE, ODE-vs-SDE figure.

Runs the suite benchmarks/sde.toml (resumable: finished cells in OUT/results.jsonl are kept) and writes
OUT/table.md (strong error with fitted and theoretical strong orders, weak errors, and the SW2 table of
every cell), OUT/ode_vs_sde_sw2.png and OUT/strong_vs_nfe.png.

    python benchmarks/sde_bench.py --out benchmarks/results/sde [--n 256] [--device cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffsolve.bench import ResultStore, Suite, report, run_sweep  # noqa: E402
from diffsolve.bench.stochastic import plot_ode_vs_sde, strong_weak_markdown  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default=str(HERE / "sde.toml"))
    ap.add_argument("--out", default=str(HERE / "results" / "sde"))
    ap.add_argument("--n", type=int, help="samples per cell (default: the suite's)")
    ap.add_argument("--device", default="cpu", help="device of the stochastic solves (ODE cells run on the CPU)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="only rewrite the tables and plots from OUT's records")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {"n": args.n} if args.n else {}
    suite = Suite.load(args.suite, overrides)
    # The device is a param of 'sde' cells (so part of their key: CPU and GPU results are kept apart).
    cells = [replace(c, params={**c.params, "device": args.device}) if c.kind == "sde" and args.device != "cpu"
             else c for c in suite.cells]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = ResultStore(out / "results.jsonl")
    if args.report_only:
        records = [store.records[c.key] for c in cells if c.key in store]
    else:
        records = run_sweep(cells, store, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    on_gpu = args.device != "cpu" and torch.cuda.is_available()
    machine = torch.cuda.get_device_name(0) if on_gpu else platform.processor() or platform.machine()
    header = (f"suite `{suite.name}` ({len(records)} of {len(cells)} cells stored), "
              f"stochastic solves on {args.device} "
              f"({machine}), torch {torch.__version__}, {args.threads} CPU thread(s); "
              + ("tables rewritten from stored records\n" if args.report_only else
                 f"this run's wall time {wall:.1f} s (cells already stored are not rerun)\n"))
    with_sw2 = [r for r in records if r.get("sw2") is not None]
    n_max = max((r["n"] for r in with_sw2), default=0)
    tables = [header, strong_weak_markdown(records, suite.fit_last),
              f"ODE vs SDE at equal NFE, n = {n_max} (the figure's data):\n",
              report.markdown([r for r in with_sw2 if r["n"] == n_max], metric="sw2", fit_last=suite.fit_last)]
    (out / "table.md").write_text("\n".join(tables), encoding="utf-8")
    plot_ode_vs_sde(records, out / "ode_vs_sde_sw2.png",
                    title=f"gmm-64: ODE vs SDE samplers at equal NFE (n = {n_max}, {args.device})")
    report.plot([r for r in records if r.get("kind") == "sde"], out / "strong_vs_nfe.png", metric="rmse",
                title="gmm-64: strong error vs NFE (same Brownian path, fine SRK reference)")
    report.write_csv(records, out / "results.csv")
    print("\n".join(tables))
    print(f"wrote {out}/table.md, ode_vs_sde_sw2.png, strong_vs_nfe.png, results.csv")


if __name__ == "__main__":
    main()
