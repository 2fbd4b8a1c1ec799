"""Every benchmark script's smoke mode, in one process: `python -m benchmarks.smoke` (about 40 s on 2 CPU cores).

Each script runs as `main(["--smoke", "--out", TMP/NAME])`: tiny sizes, few NFEs, output into one temporary folder
(removed afterwards unless --keep), its claims checked as far as a smoke run supports them. The scripts share this
process, so torch, diffusers and matplotlib are imported once. Prints one line per script (exit status, seconds) and
exits 1 when any script failed or raised.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

SCRIPTS = ("overhead", "sde_overhead", "per_sample_noise", "sde_orders", "tuned_grids", "defaults",
           "peers_accuracy", "tuning_cost", "learned", "lower_order_final", "plot_gmm2d", "plot_trained", "gpu_timing")


def run_one(name: str, out: Path) -> tuple[int, float]:
    """(exit status, wall seconds) of benchmarks.NAME's smoke run; an exception counts as status 1."""
    print(f"=== {name}", flush=True)
    start = time.perf_counter()
    try:
        status = importlib.import_module(f"benchmarks.{name}").main(["--smoke", "--out", str(out / name)])
    except SystemExit as e:  # argparse and friends
        status = e.code if isinstance(e.code, int) else 1
    except Exception:
        traceback.print_exc()
        status = 1
    return int(status or 0), time.perf_counter() - start


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", type=lambda s: s.split(","), default=list(SCRIPTS),
                   help=f"comma-separated scripts among {', '.join(SCRIPTS)}")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder with what the scripts wrote")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    unknown = [n for n in args.only if n not in SCRIPTS]
    if unknown:
        parser().error(f"unknown scripts {unknown}; choose among {', '.join(SCRIPTS)}")
    torch.set_num_threads(1)
    out = Path(tempfile.mkdtemp(prefix="diffsolve-smoke-"))
    start = time.perf_counter()
    results = {name: run_one(name, out) for name in args.only}
    total = time.perf_counter() - start
    print("\n| script | exit | seconds |\n|---|---|---|")
    for name, (status, seconds) in results.items():
        print(f"| {name} | {status} | {seconds:.1f} |")
    failed = [name for name, (status, _) in results.items() if status]
    if args.keep:
        print(f"kept {out}")
    else:
        shutil.rmtree(out, ignore_errors=True)
    print(f"{'FAIL' if failed else 'ok  '} smoke: {len(results) - len(failed)} of {len(results)} scripts passed in "
          f"{total:.1f} s" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
