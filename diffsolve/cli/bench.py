"""`diffsolve bench`: error against NFE for solvers × grids × integration variables (diffsolve.bench.run_suite)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..checks import MIN_TOL, Option
from ..errors import DiffsolveError
from . import common
from .bench_report import finish
from .common import EXIT_ALL_FAILED, EXIT_OK, EXIT_SOME_FAILED

DEFAULT_AXES = {"problem": "gmm-64", "solver": "euler,heun", "grid": "logsnr", "variable": "t,sigma,lambda",
                "nfe": "5,10,20,50,100"}
EXIT_DOC = """\
Exit status: 0 every cell succeeded; 1 an internal error (its traceback is kept in a log file named on stderr);
2 a wrong input (nothing ran); 3 some cells failed (listed; the others are reported); 4 every cell failed (the first
failures in full, no report); 130 Ctrl-C, 143 SIGTERM (finished cells are kept and reported; rerun to resume)."""
OPTIONS = (Option("--n", "int", None, "samples per cell (default: the suite's, else the problem's: 256, digits-8x8 "
                  "32, a user's model 64)", low=2, optional=True),
           Option("--repeats", "int", None, "solve each cell this many times and record the median wall time "
                  "(default 1)", low=1, optional=True),
           Option("--ref-tol", "float", None, "rtol = atol of the float64 reference solve, at least 1e-15 (float64's "
                  "round-off; default: the problem's: 1e-10 for the mixtures and toy-2d, 1e-6 for digits-8x8 and user "
                  "models); its own error is shown", low=MIN_TOL, high=1, open_high=True, optional=True),
           common.THREADS)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from ..bench.cells import RECORD_DOC
    from ..schedules import SCHEDULES

    p = sub.add_parser("bench", help="error against NFE for solvers × grids × integration variables",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RECORD_DOC + "\n\n" + EXIT_DOC,
                       description="Run a benchmark sweep: each cell solves a problem's sampling ODE (or SDE) from "
                       "the same x_T with one solver, grid, variable and NFE budget; RMSE per dimension and relative "
                       "error against a float64 reference, sliced W2 to exact samples beside its floor (with --data: "
                       "to your samples). The report (OUT/table.md, stdout) starts with the best configuration at "
                       "each NFE beside DPM-Solver++(2M) on the logSNR grid. No arguments: the 'default' suite "
                       "(gmm-64). Results are appended to OUT/results.jsonl as cells finish, keyed by the problem's "
                       "fingerprint: a rerun skips finished cells. Lists are comma-separated.")
    axes = p.add_argument_group("sweep axes (give any of these instead of --suite; the others take the defaults)")
    common.add_problem(axes, many=True, extra=f" (default {DEFAULT_AXES['problem']})")
    common.add_solver(axes, many=True, extra=f" (default {DEFAULT_AXES['solver']})")
    common.add_grid(axes, many=True, extra=f" (default {DEFAULT_AXES['grid']})")
    axes.add_argument("--variable", help="integration variables: t (probability-flow ODE), sigma or lambda (DDIM "
                      f"ODE) (default {DEFAULT_AXES['variable']})")
    axes.add_argument("--nfe", help="NFE budgets; steps = solver.steps_for(nfe), the counted NFE is recorded "
                      f"(default {DEFAULT_AXES['nfe']})")
    p.add_argument("--tols", help="tolerances (rtol = atol) for adaptive solvers such as dopri5, which pick their "
                   "own steps and ignore --grid and --nfe (default 1e-2,1e-3,1e-4,1e-5,1e-6)")
    p.add_argument("--suite", help="suite TOML file, or a packaged suite's name (default 'default' when no axis)")
    p.add_argument("--schedule", help=f"noise schedule: {', '.join(SCHEDULES)} (default: the suite's, else the "
                   "problem's own; recorded as 'model' when a user's model has another)")
    p.add_argument("--seeds", help="seeds of x_T and of the exact sample sets (default: the suite's, else 0)")
    for option in OPTIONS:
        common.add_option(p, option)
    common.add_shape(p)
    p.add_argument("--fingerprint", help="a string naming a Model whose weights cannot be hashed; change it with them")
    quality = p.add_argument_group("quality against your data (diffsolve.bench.data)")
    quality.add_argument("--data", metavar="FILE", help="real samples, a .pt tensor or .npy array of shape "
                         "(N, *sample_shape) (N >= 16) in the model's data coordinates: adds sliced W2 and MMD² to "
                         "them, each beside its floor (an exact sampler's value)")
    quality.add_argument("--features", metavar="MODULE:ATTR", help="a feature network of your own (pkg.module:attr "
                         "or file.py:attr: a callable batch -> (B, F)): adds the Fréchet distance in its feature "
                         "space (needs --data; nothing is downloaded)")
    quality.add_argument("--features-fingerprint", metavar="S", help="a string naming the feature network when its "
                         "weights cannot be hashed (a plain function); change it with them")
    p.add_argument("--dtype", choices=("float64", "float32"), help="state and model dtype (default float64)")
    p.add_argument("--out", help="results folder (default bench-results/SUITE_NAME, or bench-results/cli)")
    p.add_argument("--format", choices=("md", "csv", "json"), default=None, help="what stdout gets: md the report's "
                   "tables, the best configuration per NFE first (default); csv one row per cell; json one JSON "
                   "object per cell per line as cells finish, then one per best-per-NFE row (\"kind\": \"best\")")
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.add_argument("--fresh", action="store_true", help="delete OUT's results, report and cached references first")
    p.add_argument("--retry-failed", action="store_true", help="rerun cells stored as failed")
    p.add_argument("--repair", action="store_true", help="move bad lines of OUT/results.jsonl (not JSON, wrong "
                   "schema, no measurements) to OUT/results.bad.jsonl and rerun their cells")
    p.add_argument("--migrate", action="store_true", help="adopt records stored before cells carried their problem's "
                   "fingerprint (their keys lack it, so a rerun would compute them again): after one cell per "
                   "problem is recomputed and reproduces its stored numbers, results.jsonl is rewritten with the "
                   "current keys; then the sweep runs as usual (diffsolve.bench.migrate)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars (stderr)")
    p.add_argument("--no-report", action="store_true", help="do not write results.csv, table.md and the plots")
    p.add_argument("--list", action="store_true", help="list problems, solvers, grids, variables, schedules, suites")
    p.add_argument("--shard", metavar="I/N", help="run only cells I, I+N, I+2N, … (a job array's task I of N, "
                   "without torchrun) into this shard's own file in OUT; then --merge OUT. Under torchrun the "
                   "ranks are the shards and rank 0 merges and reports")
    p.add_argument("--merge", metavar="OUT", help="fold the shards in OUT into OUT/results.jsonl and report every "
                   "stored cell, without running any (give the suite's options for its order and fits)")
    return p


def list_names() -> str:
    from .. import problems
    from ..bench.suite import SUITES_DIR
    from ..dynamics import VARIABLES
    from ..grids import GRIDS
    from ..schedules import SCHEDULES
    from ..solvers import SOLVERS

    rows = [("problems", [*problems.PROBLEMS, "pkg.module:attr, path/to/file.py:attr or CHECKPOINT.pt (your own)"]),
            ("solvers (NAME:KEY=VALUE:… sets the options listed under each)",
             [line for s in SOLVERS.values() for line in s.describe().splitlines()]),
            ("grids", [*GRIDS, "custom:T0,T1,…", "file:GRID.json"]), ("variables", list(VARIABLES)),
            ("schedules", list(SCHEDULES)), ("suites", sorted(p.stem for p in SUITES_DIR.glob("*.toml")))]
    return "\n".join(f"{name}:\n  " + "\n  ".join(vals) for name, vals in rows)


def suite_of(args: argparse.Namespace) -> Any:
    """The Suite the arguments describe: a suite file with overrides, or the sweep axes."""
    from ..bench import Suite

    given = {"schedule": args.schedule, "n": args.n, "dtype": args.dtype, "repeats": args.repeats,
             "shape": args.shape, "fingerprint": args.fingerprint, "ref_tol": args.ref_tol, "data": args.data,
             "features": args.features, "features_fingerprint": args.features_fingerprint,
             "seeds": None if args.seeds is None else common.int_list(args.seeds, "--seeds"),
             "tols": None if args.tols is None else common.number_list(args.tols, "--tols")}
    overrides = {k: v for k, v in given.items() if v is not None}
    axis_given = [a for a in DEFAULT_AXES if getattr(args, a) is not None]
    if axis_given and args.suite:
        raise DiffsolveError(f"give either --suite or sweep axes (--{', --'.join(axis_given)}), not both; edit a "
                             f"copy of the suite file to change its axes")
    if not axis_given:
        return Suite.load(args.suite or "default", overrides)
    return Suite.from_dict(common.sweep_run(args, DEFAULT_AXES), name="cli", overrides=overrides,
                           nfe_given=args.nfe is not None)


def run(args: argparse.Namespace) -> int:
    if args.list:
        print(list_names())
        return EXIT_OK
    common.check(args, OPTIONS)
    if args.json and args.format not in (None, "json"):
        raise DiffsolveError(f"--json and --format {args.format} ask for two outputs on stdout; give one of them "
                             f"(--json is --format json)")
    for flag in ("migrate", "repair"):
        if args.fresh and getattr(args, flag):
            raise DiffsolveError(f"--fresh deletes OUT's stored results, which --{flag} would "
                                 f"{'adopt' if flag == 'migrate' else 'check and set aside'}; give one of them")
    fmt = "json" if args.json else args.format or "md"
    suite = suite_of(args)  # every name and value checked before anything is written
    if args.merge:
        from ..bench import Results
        from ..bench.ranks import merge

        records = merge(args.merge, suite.cells, repair=args.repair)
        print(f"merged {len(records)} cells into {args.merge}/results.jsonl", file=sys.stderr)
        return finish(args, Results(records, suite), fmt)
    out = common.writable_folder(f"bench-results/{suite.name}" if args.out is None else args.out, "--out")
    adopt_legacy(args, suite, out)
    return sweep(args, suite, out, fmt)


def adopt_legacy(args: argparse.Namespace, suite: Any, out: Any) -> None:
    """With --migrate, adopt OUT's records stored before fingerprints (diffsolve.bench.migrate); without, say that a
    rerun would compute them again and how to reuse them."""
    from ..bench.migrate import legacy, migrate
    from ..bench.store import ResultStore

    if args.fresh or args.shard or not (out / "results.jsonl").exists():
        return
    if args.migrate:
        n = migrate(suite.cells, out, repair=args.repair, log=lambda line: print(line, file=sys.stderr))
        print(f"migrated {n} stored records of {out}/results.jsonl to the current keys", file=sys.stderr)
        return
    found = legacy(suite.cells, ResultStore(out / "results.jsonl", repair=args.repair))
    if found:
        print(f"note: {len(found)} records in {out}/results.jsonl were stored before cells carried their problem's "
              f"fingerprint, so they will be computed again; to reuse them, stop (Ctrl-C) and rerun with --migrate",
              file=sys.stderr)


def sweep(args: argparse.Namespace, suite: Any, out: Any, fmt: str) -> int:
    """Run the suite into OUT; report (on the process that holds the whole suite) and say how it went."""
    from ..bench.api import run_suite
    from ..console import stop_status

    def emit(record: dict[str, Any], fresh: bool) -> None:  # --format json: each record as its cell is done
        print(json.dumps(record, allow_nan=False), flush=True)

    res = run_suite(suite, out, shard=args.shard, fresh=args.fresh, repair=args.repair,
                    retry_failed=args.retry_failed, threads=args.threads, progress=not args.no_progress,
                    report=False, on_record=emit if fmt == "json" else None,
                    log=lambda line: print(line, file=sys.stderr))
    if res.interrupted is not None:  # Ctrl-C (exit 130) or SIGTERM (143): the finished cells are stored
        status, what = stop_status(res.interrupted)
        print(f"\n{what}: {len(res.records)} of {len(suite.cells)} cells are stored in {out}/results.jsonl; rerun "
              f"to finish", file=sys.stderr)
        if res.records and res.complete:  # a rank's report would show part of the suite: rerun, or --merge OUT
            finish(args, res, fmt, out)
        return status
    if res.complete:
        return finish(args, res, fmt, out)
    failed = len(res.failed)
    print(f"{res.rank.label}: {len(res.records)} cells stored ({failed} failed)"
          + ("" if args.shard is None else f"; once every shard is done: diffsolve bench --merge {out}"),
          file=sys.stderr)
    return EXIT_OK if not failed else EXIT_SOME_FAILED if failed < len(res.records) else EXIT_ALL_FAILED
