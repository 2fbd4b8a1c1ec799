"""The `diffsolve` command line: `diffsolve bench …` (more subcommands register in COMMANDS)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import DiffsolveError

DEFAULT_AXES = {"problem": "gmm-64", "solver": "euler,heun", "grid": "logsnr", "variable": "t,sigma,lambda",
                "nfe": "5,10,20,50,100"}


def _csv(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(s) for s in _csv(text)]
    except ValueError:
        raise DiffsolveError(f"--{what} takes comma-separated integers, e.g. 5,10,20; got {text!r}") from None


def _bench_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from .bench.cells import RECORD_DOC

    p = sub.add_parser(
        "bench",
        help="error against NFE for solvers × grids × integration variables",
        description=(
            "Run a benchmark sweep: every cell solves the sampling ODE of a problem from the same x_T with one "
            "solver, grid, integration variable and NFE budget, and measures RMSE per dimension and relative "
            "error against a float64 reference (dopri8, rtol=atol=1e-10), and sliced W2 to exact samples beside "
            "its floor. With no arguments the packaged 'default' suite runs (gmm-64). Results are appended to "
            "OUT/results.jsonl as cells finish; rerunning skips finished cells. Lists are comma-separated."
        ),
        epilog=RECORD_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    axes = p.add_argument_group("sweep axes (give any of these instead of --suite; the others take the defaults shown)")
    axes.add_argument("--problem", help=f"problem names (default {DEFAULT_AXES['problem']}); see --list")
    axes.add_argument("--solver", help=f"solvers, each NAME or NAME:KEY=VALUE:… with solver options "
                                       f"(default {DEFAULT_AXES['solver']}); see --list")
    axes.add_argument("--grid", help=f"step grids: time, logsnr, quadratic, karras (default {DEFAULT_AXES['grid']})")
    axes.add_argument("--variable", help=f"integration variables: t (probability-flow ODE), sigma or lambda "
                                         f"(DDIM ODE) (default {DEFAULT_AXES['variable']})")
    axes.add_argument("--nfe", help=f"NFE budgets; steps = solver.steps_for(nfe), the counted NFE is recorded "
                                    f"(default {DEFAULT_AXES['nfe']})")
    p.add_argument("--tols", help="tolerances (rtol = atol) for adaptive solvers such as dopri5, which pick their "
                                  "own steps and ignore --grid and --nfe (default 1e-2,1e-3,1e-4,1e-5,1e-6)")
    p.add_argument("--suite", help="suite TOML file, or the name of a packaged suite (default: 'default' "
                                   "when no axis is given)")
    p.add_argument("--schedule", help="noise schedule: linear, cosine, discrete, edm "
                                      "(default: the suite's, else linear)")
    p.add_argument("--seeds", help="seeds of x_T and of the exact sample sets (default: the suite's, else 0)")
    p.add_argument("--n", type=int, help="samples per cell (default: the suite's, else 256)")
    p.add_argument("--repeats", type=int, help="solve each cell this many times and record the median wall "
                                               "time (errors are the same every time; default 1)")
    p.add_argument("--dtype", choices=("float64", "float32"), help="state and model dtype (default float64)")
    p.add_argument("--out", help="results folder (default bench-results/SUITE_NAME, or bench-results/cli)")
    p.add_argument("--json", action="store_true", help="print one JSON object per cell per line on stdout "
                                                       "(stored cells too) instead of the tables")
    p.add_argument("--fresh", action="store_true", help="delete the stored results and cached references in OUT "
                                                        "before running")
    p.add_argument("--retry-failed", action="store_true", help="rerun cells stored as failed")
    p.add_argument("--repair", action="store_true", help="move bad lines of OUT/results.jsonl (not JSON, wrong "
                                                         "schema, no measurements) to OUT/results.bad.jsonl and "
                                                         "rerun their cells")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar (stderr)")
    p.add_argument("--no-report", action="store_true", help="do not write results.csv, table.md and the plots")
    p.add_argument("--list", action="store_true", help="list valid problems, solvers, grids, variables, "
                                                       "schedules and suites, then exit")
    return p


def _list_names() -> str:
    from . import problems
    from .bench.suite import SUITES_DIR
    from .dynamics import VARIABLES
    from .grids import GRIDS
    from .schedules import SCHEDULES
    from .solvers import SOLVERS

    rows = [
        ("problems", [f"{k}" for k in problems.PROBLEMS]),
        ("solvers", [f"{k} (order {s.order}{', stochastic' if s.stochastic else ''}"
                     f"{', adaptive' if s.adaptive else ''})" for k, s in SOLVERS.items()]),
        ("grids", list(GRIDS)), ("variables", list(VARIABLES)), ("schedules", list(SCHEDULES)),
        ("suites", sorted(p.stem for p in SUITES_DIR.glob("*.toml"))),
    ]
    return "\n".join(f"{name}:\n  " + "\n  ".join(vals) for name, vals in rows)


def _bench_suite(args: argparse.Namespace) -> Any:
    from .bench import Suite

    overrides: dict[str, Any] = {}
    if args.schedule:
        overrides["schedule"] = args.schedule
    if args.seeds:
        overrides["seeds"] = _ints(args.seeds, "seeds")
    if args.n is not None:
        overrides["n"] = args.n
    if args.dtype:
        overrides["dtype"] = args.dtype
    if args.repeats is not None:
        overrides["repeats"] = args.repeats
    if args.tols:
        try:
            overrides["tols"] = [float(x) for x in _csv(args.tols)]
        except ValueError:
            raise DiffsolveError(f"--tols takes comma-separated numbers, e.g. 1e-3,1e-5; got {args.tols!r}") from None
    axis_given = [a for a in DEFAULT_AXES if getattr(args, a) is not None]
    if axis_given and args.suite:
        raise DiffsolveError(
            f"give either --suite or sweep axes (--{', --'.join(axis_given)}), not both; "
            f"edit a copy of the suite file to change its axes"
        )
    if not axis_given:
        return Suite.load(args.suite or "default", overrides)
    ax = {a: getattr(args, a) or DEFAULT_AXES[a] for a in DEFAULT_AXES}
    run = {"problems": _csv(ax["problem"]), "solvers": _csv(ax["solver"]), "grids": _csv(ax["grid"]),
           "variables": _csv(ax["variable"]), "nfe": _ints(ax["nfe"], "nfe")}
    return Suite.from_dict(run, name="cli", overrides=overrides)


def _bench(args: argparse.Namespace) -> int:
    if args.list:
        print(_list_names())
        return 0
    from .bench import Inputs, ResultStore, report, run_sweep
    from .bench.store import clear_store
    from .bench.sweep import Terminated, sigterm_as_interrupt

    suite = _bench_suite(args)
    out = Path(args.out or Path("bench-results") / suite.name)
    if out.exists() and not out.is_dir():
        raise DiffsolveError(f"--out {str(out)!r} is a file; give a folder for the results (created if missing)")
    if args.fresh and out.exists():
        clear_store(out / "results.jsonl")  # with its shards, set-aside lines and claims
        for name in ("results.csv", "table.md", "rmse_vs_nfe.png", "sw2_vs_nfe.png"):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "cache", ignore_errors=True)
    store = ResultStore(out / "results.jsonl", repair=args.repair)
    stderr = sys.stderr

    def emit(record: dict[str, Any], fresh: bool) -> None:
        if args.json:
            print(json.dumps(record, allow_nan=False), flush=True)

    print(f"suite {suite.name!r}: {len(suite.cells)} cells, results in {out}/results.jsonl", file=stderr)
    interrupted = 0
    try:
        with sigterm_as_interrupt():
            records = run_sweep(suite.cells, store, progress=not args.no_progress, retry_failed=args.retry_failed,
                                on_record=emit, inputs=Inputs(cache_dir=out / "cache"))
    except KeyboardInterrupt as e:  # Ctrl-C (exit 130) or SIGTERM (143): finished cells are stored
        interrupted = 143 if isinstance(e, Terminated) else 130
        records = [store.records[c.key] for c in suite.cells if c.key in store]
        print(f"\n{'terminated (SIGTERM)' if interrupted == 143 else 'interrupted'}: {len(records)} of "
              f"{len(suite.cells)} cells are stored in {out}/results.jsonl; rerun to finish", file=stderr)
    if not args.no_report and records:
        report.write_csv(records, out / "results.csv")
        tables = "\n".join(report.markdown(records, metric=m, fit_last=suite.fit_last, fit_min_nfe=suite.fit_min_nfe)
                           for m in ("rmse", "sw2"))
        (out / "table.md").write_text(tables, encoding="utf-8")
        report.plot(records, out / "rmse_vs_nfe.png", metric="rmse")
        if any(r.get("sw2") is not None for r in records):
            report.plot(records, out / "sw2_vs_nfe.png", metric="sw2")
        if not args.json:
            print(tables)
        print(f"wrote {out}/results.csv, table.md, rmse_vs_nfe.png", file=stderr)
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        print(f"{len(failed)} cell(s) failed, e.g. {failed[0]['solver']} nfe={failed[0]['nfe_target']}: "
              f"{failed[0]['error']}", file=stderr)
    return interrupted


COMMANDS: dict[str, tuple[Callable[[argparse._SubParsersAction], argparse.ArgumentParser],
                          Callable[[argparse.Namespace], int]]] = {
    "bench": (_bench_parser, _bench),
}


def _train_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from . import training

    p = sub.add_parser("train", help="train a small eps-network (toy-2d, digits-8x8) on the CPU",
                       description=training.__doc__)
    training.add_arguments(p)
    return p


def _likelihood_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from . import likelihood

    p = sub.add_parser("likelihood", help="PF-ODE log-likelihood (bits/dim) of a shipped model on held-out data",
                       description=likelihood.pretrained_likelihood.__doc__)
    likelihood.add_arguments(p)
    return p


def _train(args: argparse.Namespace) -> int:
    from . import training

    return training.run(args)


def _likelihood(args: argparse.Namespace) -> int:
    from . import likelihood

    return likelihood.run(args)


COMMANDS["train"] = (_train_parser, _train)
COMMANDS["likelihood"] = (_likelihood_parser, _likelihood)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per entry of COMMANDS."""
    parser = argparse.ArgumentParser(prog="diffsolve", description="Diffusion sampling as differential equations.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (make, _) in COMMANDS.items():
        make(sub).set_defaults(command=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `diffsolve` script; returns the exit status."""
    command = "diffsolve"
    try:  # Ctrl-C anywhere, start-up imports included: one line and status 130, no traceback
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        command = f"diffsolve {args.command}"
        return COMMANDS[args.command][1](args)
    except DiffsolveError as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
