"""The `diffsolve` command line: `diffsolve bench | train | likelihood …` (subcommands register in COMMANDS)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .checks import positive_int
from .errors import DiffsolveError

DEFAULT_AXES = {"problem": "gmm-64", "solver": "euler,heun", "grid": "logsnr", "variable": "t,sigma,lambda",
                "nfe": "5,10,20,50,100"}
EXIT_OK, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_ALL_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 2, 3, 4, 130, 143
EXIT_DOC = """\
Exit status: 0 every cell succeeded; 2 a wrong input (nothing ran); 3 some cells failed (they are
listed, the others are reported); 4 every cell failed (the first failures are printed in full, no
report is written); 130 interrupted by Ctrl-C, 143 terminated by SIGTERM (finished cells are kept and
reported; rerun to resume)."""
REPORT_FILES = ("results.csv", "table.md", "rmse_vs_nfe.png", "sw2_vs_nfe.png", "ode_vs_sde_sw2.png",
                "strong_vs_nfe.png")


def _csv(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _grid_list(text: str) -> list[str]:
    """Comma-separated grid specs; a piece that starts like a number continues a custom grid's times."""
    out: list[str] = []
    for piece in _csv(text):
        if out and out[-1].startswith("custom:") and piece[:1] in "0123456789.-+":
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def _shape(text: str) -> list[int]:
    try:
        dims = [int(s) for s in _csv(text)]
    except ValueError:
        dims = []
    if not dims or any(d < 1 for d in dims):
        raise DiffsolveError(f"--shape takes the shape of one sample as positive integers, e.g. 3,32,32; got {text!r}")
    return dims


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(s) for s in _csv(text)]
    except ValueError:
        raise DiffsolveError(f"--{what} takes comma-separated integers, e.g. 5,10,20; got {text!r}") from None


def _bench_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from .bench.cells import RECORD_DOC
    from .schedules import SCHEDULES

    p = sub.add_parser(
        "bench",
        help="error against NFE for solvers × grids × integration variables",
        description=(
            "Run a benchmark sweep: every cell solves the sampling ODE of a problem from the same x_T with one "
            "solver, grid, integration variable and NFE budget, and measures RMSE per dimension and relative "
            "error against a float64 reference (dopri8, rtol=atol=1e-10), and sliced W2 to exact samples beside "
            "its floor. With no arguments the packaged 'default' suite runs (gmm-64). Results are appended to "
            "OUT/results.jsonl as cells finish, keyed by the problem's fingerprint (its parameters or network "
            "weights): rerunning skips finished cells, a changed network recomputes. Lists are comma-separated."
        ),
        epilog=RECORD_DOC + "\n\n" + EXIT_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    axes = p.add_argument_group("sweep axes (give any of these instead of --suite; the others take the defaults shown)")
    axes.add_argument("--problem", help=f"problems (default {DEFAULT_AXES['problem']}): registered names (see --list), "
                                        f"pkg.module:attr, path/to/file.py:attr (attr: a Problem, a diffsolve Model "
                                        f"or a function returning one) or a checkpoint written by `diffsolve train`")
    axes.add_argument("--solver", help=f"solvers, each NAME or NAME:KEY=VALUE:… with solver options "
                                       f"(default {DEFAULT_AXES['solver']}); see --list")
    axes.add_argument("--grid", help=f"step grids: time, logsnr, quadratic, karras, with parameters after ':' "
                                     f"(karras:rho=5), custom:T0,T1,… or file:GRID.json (default "
                                     f"{DEFAULT_AXES['grid']})")
    axes.add_argument("--variable", help=f"integration variables: t (probability-flow ODE), sigma or lambda "
                                         f"(DDIM ODE) (default {DEFAULT_AXES['variable']})")
    axes.add_argument("--nfe", help=f"NFE budgets; steps = solver.steps_for(nfe), the counted NFE is recorded "
                                    f"(default {DEFAULT_AXES['nfe']})")
    p.add_argument("--tols", help="tolerances (rtol = atol) for adaptive solvers such as dopri5, which pick their "
                                  "own steps and ignore --grid and --nfe (default 1e-2,1e-3,1e-4,1e-5,1e-6)")
    p.add_argument("--suite", help="suite TOML file, or the name of a packaged suite (default: 'default' "
                                   "when no axis is given)")
    p.add_argument("--schedule", help=f"noise schedule: {', '.join(SCHEDULES)} (default: the suite's, else "
                                      "the problem's own: flow for toy-2d-flow, linear for the other shipped "
                                      "problems; recorded as 'model' "
                                      "when a user's model has another)")
    p.add_argument("--seeds", help="seeds of x_T and of the exact sample sets (default: the suite's, else 0)")
    p.add_argument("--n", type=int, help="samples per cell (default: the suite's, else the problem's: 256, "
                                         "digits-8x8 32, a user's model 64)")
    p.add_argument("--shape", help="shape of one sample for a problem given as a Model, e.g. 3,32,32 "
                                   "(default: the model's `shape` attribute)")
    p.add_argument("--fingerprint", help="a string identifying a Model whose weights cannot be hashed (e.g. a "
                                         "plain function); change it whenever the network changes")
    p.add_argument("--ref-tol", type=float, help="rtol = atol of the float64 reference solve (default: the "
                                                 "problem's: 1e-10 for the mixtures and toy-2d, 1e-6 for digits-8x8 "
                                                 "and user models); its error is measured by one re-solve 10x "
                                                 "tighter and shown as 'reference error'")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op CPU threads for the cells (default 1: "
                                                          "the cells are small, more threads only contend)")
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
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars (stderr)")
    p.add_argument("--no-report", action="store_true", help="do not write results.csv, table.md and the plots")
    p.add_argument("--list", action="store_true", help="list valid problems, solvers, grids, variables, "
                                                       "schedules and suites, then exit")
    p.add_argument("--shard", metavar="I/N", help="run only cells I, I+N, I+2N, … of the suite (a job array's "
                   "task I of N, without torchrun) into this shard's own file in OUT; then --merge OUT. Under "
                   "torchrun the ranks are the shards and rank 0 merges and reports")
    p.add_argument("--merge", metavar="OUT", help="fold the shards in OUT into OUT/results.jsonl and write the "
                   "report of every stored cell, without running any (give the suite's options for its fits)")
    return p


def _list_names() -> str:
    from . import problems
    from .bench.suite import SUITES_DIR
    from .dynamics import VARIABLES
    from .grids import GRIDS
    from .schedules import SCHEDULES
    from .solvers import SOLVERS

    rows = [
        ("problems", [*problems.PROBLEMS, "pkg.module:attr, path/to/file.py:attr or CHECKPOINT.pt (your own; "
                                          "attr a Problem, a diffsolve Model or a function returning one)"]),
        ("solvers (NAME:KEY=VALUE:… sets the options listed under each)",
         [line for s in SOLVERS.values() for line in s.describe().splitlines()]),
        ("grids", [*GRIDS, "custom:T0,T1,…", "file:GRID.json"]), ("variables", list(VARIABLES)),
        ("schedules", list(SCHEDULES)),
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
    if args.shape:
        overrides["shape"] = _shape(args.shape)
    if args.fingerprint:
        overrides["fingerprint"] = args.fingerprint
    if args.ref_tol is not None:
        overrides["ref_tol"] = args.ref_tol
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
    run = {"problems": _csv(ax["problem"]), "solvers": _csv(ax["solver"]), "grids": _grid_list(ax["grid"]),
           "variables": _csv(ax["variable"]), "nfe": _ints(ax["nfe"], "nfe")}
    return Suite.from_dict(run, name="cli", overrides=overrides)


def _bench(args: argparse.Namespace) -> int:
    if args.list:
        print(_list_names())
        return EXIT_OK
    import torch

    from . import distributed

    torch.set_num_threads(positive_int(args.threads, "--threads", "give the number of CPU threads to use, e.g. 1"))
    suite = _bench_suite(args)
    if args.merge:
        return _merge(args, suite)
    out = Path(args.out or Path("bench-results") / suite.name)
    if out.exists() and not out.is_dir():
        raise DiffsolveError(f"--out {str(out)!r} is a file; give a folder for the results (created if missing)")
    if args.fresh and args.shard:
        raise DiffsolveError("--fresh with --shard would let one job delete the others' results; clear OUT once "
                             "before starting the job array (or run one job with --fresh first)")
    rank = distributed.start(args.shard)
    try:
        return _bench_ranked(args, suite, out, rank)
    finally:
        distributed.stop(rank)


def _merge(args: argparse.Namespace, suite: Any) -> int:
    """--merge OUT: fold the shards into results.jsonl and report every stored cell."""
    from .bench import ResultStore
    from .bench.sweep import merge_store

    out = Path(args.merge)
    if not (out / "results.jsonl").exists() and not list(out.glob("results.shard-*.jsonl")):
        raise DiffsolveError(f"--merge {str(out)!r}: no results.jsonl or results.shard-*.jsonl there; give the "
                             f"--out folder of the sweep")
    store = ResultStore(out / "results.jsonl", repair=args.repair)
    n = merge_store(store)
    print(f"merged {n} cells into {out}/results.jsonl", file=sys.stderr)
    return _finish(args, suite, list(store.records.values()), out)


def _bench_ranked(args: argparse.Namespace, suite: Any, out: Path, rank: Any) -> int:
    """The sweep on this rank: its dealt cells into its shard; rank 0 (torchrun) merges and reports after all."""
    from . import distributed
    from .bench import Inputs, ResultStore, run_sweep
    from .bench.store import clear_store
    from .bench.sweep import Terminated, merge_store, sigterm_as_interrupt

    if args.fresh and out.exists() and rank.leader:
        clear_store(out / "results.jsonl")  # with its shards, set-aside lines and claims
        for name in REPORT_FILES:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "cache", ignore_errors=True)
    distributed.barrier(rank)
    parted = rank.world > 1
    store = ResultStore(out / "results.jsonl", repair=args.repair, shard=rank.label if parted else None)
    stderr = sys.stderr

    def emit(record: dict[str, Any], fresh: bool) -> None:
        if args.json:
            print(json.dumps(record, allow_nan=False), flush=True)

    print(f"suite {suite.name!r}: {len(suite.cells)} cells, results in {out}/results.jsonl"
          + (f" ({rank.label}: cells {rank.rank}, {rank.rank + rank.world}, …)" if parted else ""), file=stderr)
    inputs = Inputs(cache_dir=out / "cache", progress=not args.no_progress)
    try:
        with sigterm_as_interrupt():
            records = run_sweep(suite.cells, store, progress=not args.no_progress, retry_failed=args.retry_failed,
                                on_record=emit, inputs=inputs, rank=rank if parted else None)
    except KeyboardInterrupt as e:  # Ctrl-C (exit 130) or SIGTERM (143): finished cells are stored
        status = EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
        records = [store.records[c.key] for c in suite.cells if c.key in store]
        print(f"\n{'terminated (SIGTERM)' if status == EXIT_TERMINATED else 'interrupted'}: {len(records)} of "
              f"{len(suite.cells)} cells are stored in {out}/results.jsonl; rerun to finish", file=stderr)
        if records and not parted:  # a rank's report would show part of the suite: rerun, or --merge OUT
            _finish(args, suite, records, out)
        return status
    for ref in inputs.references:
        print(f"reference for {ref['problem']} (n={ref['n']}, seed {ref['seed']}, rtol {ref['ref_tol']:g}): "
              + (f"{ref['nfe']} NFE" if ref["nfe"] else "closed-form ODE")
              + f" in {ref['seconds']:.1f} s with its check, reference error {ref['ref_err']:.2e}",
              file=stderr)
    if not parted:
        return _finish(args, suite, records, out)
    distributed.barrier(rank)
    if rank.group and rank.leader:  # every rank is done: fold the shards and report the whole suite once
        merge_store(store)
        return _finish(args, suite, [store.records[c.key] for c in suite.cells if c.key in store], out)
    failed = sum(r.get("status") != "ok" for r in records)
    print(f"{rank.label}: {len(records)} cells stored ({failed} failed)"
          + ("" if rank.group else f"; once every shard is done: diffsolve bench --merge {out}"), file=stderr)
    return EXIT_OK if not failed else EXIT_SOME_FAILED if failed < len(records) else EXIT_ALL_FAILED


def _failure_lines(failed: list[dict[str, Any]], full: int = 3) -> list[str]:
    """The first `full` failures with their whole message (and traceback when not a DiffsolveError), then one
    line per other failed cell."""
    lines = []
    for i, r in enumerate(failed):
        where = (f"{r['problem']} {r['solver']}{'[' + r['options_label'] + ']' if r.get('options_label') else ''} "
                 f"{r['grid']} {r['variable']} " + (f"tol={r['tol']:g}" if r.get("tol") is not None
                                                     else f"nfe={r['nfe_target']}") + f" seed={r['seed']}")
        if i < full:
            lines.append(f"  {where}: {r['error']}" + (f"\n{r['traceback']}" if r.get("traceback") else ""))
        else:
            lines.append(f"  {where}: {str(r['error']).splitlines()[0][:100]}")
    return lines


def _finish(args: argparse.Namespace, suite: Any, records: list[dict[str, Any]], out: Path) -> int:
    """Write and print the report; the exit status says whether every cell, some or none succeeded."""
    from .bench import report

    stderr = sys.stderr
    failed = [r for r in records if r.get("status") != "ok"]
    if records and len(failed) == len(records):
        print(f"every cell failed ({len(failed)}); no report written. The failures:", file=stderr)
        print("\n".join(_failure_lines(failed)), file=stderr)
        return EXIT_ALL_FAILED
    written = [out / "results.jsonl"]
    if not args.no_report and records:
        report.write_csv(records, out / "results.csv")
        metrics = ["rmse"] + (["sw2"] if any(r.get("sw2") is not None for r in records) else [])
        tables = "\n".join(report.markdown(records, metric=m, fit_last=suite.fit_last, fit_min_nfe=suite.fit_min_nfe)
                           for m in metrics) + "\n" + report.legend() + "\n"
        (out / "table.md").write_text(tables, encoding="utf-8")
        written += [out / "results.csv", out / "table.md"]
        for m in metrics:
            if report.plot(records, out / f"{m}_vs_nfe.png", metric=m):
                written.append(out / f"{m}_vs_nfe.png")
        if any(r.get("kind") == "sde" for r in records):  # strong and weak errors, ODE vs SDE at equal NFE
            from .bench.stochastic import plot_ode_vs_sde, strong_weak_markdown

            tables = strong_weak_markdown(records, suite.fit_last) + "\n" + tables
            (out / "table.md").write_text(tables, encoding="utf-8")
            plot_ode_vs_sde(records, out / "ode_vs_sde_sw2.png")
            report.plot([r for r in records if r.get("kind") == "sde"], out / "strong_vs_nfe.png", metric="rmse")
            written += [out / "ode_vs_sde_sw2.png", out / "strong_vs_nfe.png"]
        if not args.json:
            print(tables)
    print("wrote " + ", ".join(str(p) for p in written), file=stderr)
    if failed:
        print(f"{len(failed)} of {len(records)} cells failed (the report shows 'failed' there):", file=stderr)
        print("\n".join(_failure_lines(failed, full=1)), file=stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


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

    p = sub.add_parser("likelihood", help="PF-ODE log-likelihood (bits/dim) of a shipped model or a checkpoint "
                                          "on held-out data", description=likelihood.pretrained_likelihood.__doc__)
    p.add_argument("model", help="a shipped model (toy-2d, toy-2d-flow, digits-8x8) or a checkpoint written by "
                                 "`diffsolve train`")
    p.add_argument("--n", type=int, default=None, help="held-out points (toy: 1000; digits: all 297)")
    p.add_argument("--seed", type=int, default=0, help="seeds data, dequantization and probes")
    p.add_argument("--divergence", choices=likelihood.DIVERGENCES, default=None,
                   help="exact trace or Hutchinson (default: exact for toy-2d, hutchinson for digits)")
    p.add_argument("--probes", type=int, default=1, help="Hutchinson probes per evaluation")
    p.add_argument("--probe-seed", type=int, default=None, help="seed of the Hutchinson probes (default: --seed)")
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p


def _train(args: argparse.Namespace) -> int:
    from . import training

    return training.run(args)


def _likelihood(args: argparse.Namespace) -> int:
    import torch

    from . import nets
    from .likelihood import pretrained_likelihood

    if args.model not in nets.PRETRAINED and not Path(args.model).is_file():
        raise DiffsolveError(f"unknown model {args.model!r}; give {' or '.join(nets.PRETRAINED)} or the path of a "
                             f"checkpoint written by `diffsolve train`")
    torch.set_num_threads(positive_int(args.threads, "--threads", "give the number of CPU threads to use, e.g. 1"))
    out = pretrained_likelihood(args.model, n=args.n, seed=args.seed, divergence=args.divergence, probes=args.probes,
                                probe_seed=args.probe_seed, rtol=args.rtol, atol=args.atol)
    width = max(map(len, out))
    for k, v in out.items():
        print(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return EXIT_OK


COMMANDS["train"] = (_train_parser, _train)
COMMANDS["likelihood"] = (_likelihood_parser, _likelihood)


def _tune_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from .tuning import METHODS, OPTIMIZERS

    p = sub.add_parser("tune", help="tune a step grid to a model, a solver and an NFE; writes a grid file",
                       description="Minimise the solver's end-point error to a float64 teacher on training draws of "
                                   "x_T; print training and held-out error and the cost; write a grid file that "
                                   "--grid file:OUT loads.")
    p.add_argument("problem", help="a shipped problem (gmm-64, toy-2d, …), a checkpoint or module:attr")
    p.add_argument("--solver", required=True, help="a fixed-step deterministic solver, e.g. ipndm")
    p.add_argument("--nfe", type=int, required=True, help="the NFE budget the grid is tuned for")
    p.add_argument("--train-seeds", default="10", help="seeds of the training draws (comma-separated)")
    p.add_argument("--heldout-seeds", default="0", help="seeds of the held-out draws ('' for none)")
    p.add_argument("--validation-seeds", default=None,
                   help="seeds of the validation draws that choose among start and refinements (default: each "
                        "training seed + 7919; '' for none: the training error chooses)")
    p.add_argument("--n", type=int, default=1024, help="draws per seed")
    p.add_argument("--method", choices=METHODS, default="dp+refine")
    p.add_argument("--candidates", type=int, default=64, help="candidate times of the dynamic programme")
    p.add_argument("--max-evals", type=int, default=None,
                   help="solver runs of the refinement (default 100 per tuned parameter)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="lbfgs",
                   help="the refinement: L-BFGS-B with finite-difference gradients, or Nelder–Mead")
    p.add_argument("--no-eval-times", action="store_true",
                   help="tune the step times alone (default: also the times the network is evaluated at, for "
                        "solvers that call it once per grid node)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a solver option (repeatable), e.g. --option order=3")
    p.add_argument("--shape", type=_shape, default=None, help="shape of one sample for a bare Model")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op CPU threads (default 1)")
    p.add_argument("--out", required=True, help="the grid file to write")
    return p


def _tune(args: argparse.Namespace) -> int:
    import torch

    from .tuning import tune

    torch.set_num_threads(positive_int(args.threads, "--threads", "give the number of CPU threads to use, e.g. 1"))

    options: dict[str, Any] = {}
    for pair in args.option:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise DiffsolveError(f"--option takes KEY=VALUE, e.g. order=3; got {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    tuned = tune(args.problem, args.solver, positive_int(args.nfe, "--nfe", "give the NFE budget, e.g. 6"),
                 train_seeds=_ints(args.train_seeds, "train-seeds"),
                 heldout_seeds=_ints(args.heldout_seeds, "heldout-seeds"),
                 validation_seeds=None if args.validation_seeds is None else _ints(args.validation_seeds,
                                                                                  "validation-seeds"),
                 n=positive_int(args.n, "--n", "give the draws per seed, e.g. 1024"), method=args.method,
                 candidates=args.candidates, max_evals=args.max_evals, shape=args.shape, optimizer=args.optimizer,
                 eval_times=False if args.no_eval_times else None, **options)
    path = tuned.save(args.out)
    held = "—" if tuned.heldout_error is None else f"{tuned.heldout_error:.4g}"
    held0 = "—" if tuned.start_heldout_error is None else f"{tuned.start_heldout_error:.4g}"
    val = "" if tuned.validation_error is None else f", validation {tuned.validation_error:.4g}"
    print(f"{tuned.solver} NFE {tuned.nfe} on {tuned.problem}: RMSE train {tuned.train_error:.4g} "
          f"(start {tuned.start}: {tuned.start_train_error:.4g}){val}, held-out {held} (start {held0}); "
          f"chosen: {tuned.chosen}{' (decoupled evaluation times)' if tuned.decoupled else ''}")
    print(f"cost: {tuned.cost_nfe} model evaluations, {tuned.cost_seconds:.1f} s wall, "
          f"{tuned.cost_cpu_seconds:.1f} s CPU; wrote {path} (use --grid file:{path})")
    return EXIT_OK


COMMANDS["tune"] = (_tune_parser, _tune)


def _sample_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from . import parallel_sample

    p = sub.add_parser("sample", help="draw many samples of one cell, data-parallel (torchrun or --shard i/n)",
                       description=parallel_sample.__doc__)
    p.add_argument("--problem", required=True, help="a problem name (diffsolve bench --list), module:attr, "
                                                    "file.py:attr or a checkpoint")
    p.add_argument("--solver", required=True, help="a solver, with options as in bench: e.g. ddpm, ddim:eta=0.5")
    p.add_argument("--nfe", type=int, required=True, help="network evaluations per sample")
    p.add_argument("--n", type=int, required=True, help="number of samples")
    p.add_argument("--out", required=True, help="folder for batches/, manifest.json and samples.pt")
    p.add_argument("--batch", type=int, default=256, help="samples per batch (default 256)")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed + i for its x_T and noise (default 0)")
    p.add_argument("--grid", default="logsnr", help="a grid spec (default logsnr)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="model and state dtype")
    p.add_argument("--device", help="where to sample (default: cuda:LOCAL_RANK under torchrun with CUDA, else cpu)")
    p.add_argument("--shard", help="i/n: this job's share of the batches when started without torchrun")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op CPU threads per process (default 1)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar (stderr)")
    return p


def _sample(args: argparse.Namespace) -> int:
    import torch

    from . import distributed, parallel_sample
    from .bench.suite import parse_solver

    torch.set_num_threads(positive_int(args.threads, "--threads", "give the number of CPU threads to use, e.g. 1"))
    solver, options = parse_solver(args.solver)
    job = parallel_sample.SampleJob(problem=args.problem, solver=solver, nfe=args.nfe, n=args.n, seed=args.seed,
                                    batch=args.batch, grid=args.grid, dtype=args.dtype, options=options,
                                    device=args.device or distributed.default_device())
    job.check()  # before joining the process group: a wrong input stops every rank before any work
    rank = distributed.start(args.shard)
    try:
        done = parallel_sample.run(job, args.out, rank, progress=not args.no_progress)
    finally:
        distributed.stop(rank)
    if done is not None:
        print(f"wrote {done} ({job.n} samples)", file=sys.stderr)
    elif not rank.group:
        print(f"{rank.label}: its batches are in {args.out}/batches; samples.pt is written by the shard that "
              f"finishes last", file=sys.stderr)
    return EXIT_OK


COMMANDS["sample"] = (_sample_parser, _sample)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per entry of COMMANDS."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="diffsolve", description="Diffusion sampling as differential equations.")
    parser.add_argument("--version", action="version", version=f"diffsolve {__version__}")
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
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
