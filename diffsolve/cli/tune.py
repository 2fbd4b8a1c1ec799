"""`diffsolve tune`: tune a step grid to a problem, a solver and an NFE budget; write a grid file (ds.grids.tune).

Every argument left out takes `diffsolve.tuning.tune`'s own default (read from its signature for the help), so
the command line and Python tune the same grid for the same inputs.
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from ..checks import Option
from ..errors import DiffsolveError
from . import common
from .common import EXIT_OK

OPTIONS = (Option("--nfe", "int", None, "the NFE budget the grid is tuned for", low=1),
           Option("--n", "int", None, "draws of x_T per seed", low=1, optional=True),
           Option("--candidates", "int", None, "candidate times of the dynamic programme", low=2, optional=True),
           Option("--max-evals", "int", None, "solver runs of the refinement (default: 100 per tuned parameter)",
                  low=1, optional=True),
           Option("--restarts", "int", None, "refine from this many of the best starts", low=1, optional=True),
           Option("--teacher-tol", "float", None, "rtol = atol of the float64 teacher solve", low=0, open_low=True,
                  high=1, open_high=True, optional=True),
           common.THREADS)
SEEDS = {"--train-seeds": "seeds of the training draws", "--heldout-seeds": "seeds of the held-out draws ('' for "
         "none)", "--validation-seeds": "seeds of the validation draws that choose among the start and the "
         "refinements ('' for none: the training error chooses; default: each training seed + 7919)"}


def _defaults() -> dict[str, Any]:
    from ..tuning import tune

    return {k: p.default for k, p in inspect.signature(tune).parameters.items() if p.default is not p.empty}


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from ..tuning import METHODS, OPTIMIZERS

    d = _defaults()
    p = sub.add_parser("tune", help="tune a step grid to a model, a solver and an NFE; writes a grid file",
                       description="Minimise the solver's end-point error to a float64 teacher on training draws of "
                       "x_T; print training and held-out error and the cost; write a grid file that --grid "
                       "file:OUT loads. Every argument left out takes the default of diffsolve.grids.tune.")
    common.add_problem(p, extra=" (required)")
    common.add_solver(p, required=True, extra="; a fixed-step deterministic solver, e.g. ipndm:order=3")
    for option in OPTIONS:
        dest = option.name.lstrip("-").replace("-", "_")
        common.add_option(p, option, required=option.name == "--nfe",
                          help=option.doc + (f" (default {d[dest]})" if d.get(dest) is not None else ""))
    for flag, doc in SEEDS.items():
        dest = flag.lstrip("-").replace("-", "_")
        shown = "" if d.get(dest) is None else f" (default {','.join(map(str, d[dest]))})"
        p.add_argument(flag, help=f"{doc}, comma-separated{shown}")
    p.add_argument("--variable", help="the ODE's integration variable: t, sigma or lambda (default: the solver's own)")
    p.add_argument("--method", choices=METHODS, help=f"default {d.get('method')}")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="the refinement: L-BFGS-B with finite-difference "
                   f"gradients, or Nelder–Mead (default {d.get('optimizer')})")
    p.add_argument("--no-eval-times", action="store_true", help="tune the step times alone (default: also the "
                   "times the network is evaluated at, for solvers that call it once per grid node)")
    common.add_shape(p)
    p.add_argument("--out", required=True, help="the grid file to write (its folder must exist)")
    p.add_argument("legacy_problem", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--option", action="append", help=argparse.SUPPRESS)
    return p


def _old_forms(args: argparse.Namespace) -> None:
    """The forms before one vocabulary, refused with the new one named."""
    if args.legacy_problem is not None:
        raise DiffsolveError(f"tune takes the problem as --problem {args.legacy_problem}, not as a positional "
                             f"argument (the same as bench and sample)")
    if args.problem is None:
        raise DiffsolveError("tune needs --problem, e.g. --problem gmm-64 (see `diffsolve tune --help`)")
    if args.option:
        name = (args.solver or "SOLVER").split(":")[0]
        raise DiffsolveError(f"--option is gone: give solver options in the solver spec, as bench and sample do: "
                             f"--solver {name}:{':'.join(args.option)}")


def keywords(args: argparse.Namespace) -> dict[str, Any]:
    """tune()'s keyword arguments for what was given (the rest keep tune's defaults)."""
    from ..bench.suite import parse_solver

    solver, options = parse_solver(args.solver)
    given: dict[str, Any] = {k: getattr(args, k) for k in ("n", "candidates", "max_evals", "restarts", "teacher_tol",
                                                           "variable", "method", "optimizer", "shape")}
    for flag in SEEDS:
        dest = flag.lstrip("-").replace("-", "_")
        text = getattr(args, dest)
        if text is not None:
            given[dest] = [] if not text.strip() else common.int_list(text, flag)
    if args.no_eval_times:
        given["eval_times"] = False
    return {"solver": solver, **options, **{k: v for k, v in given.items() if v is not None}}


def run(args: argparse.Namespace) -> int:
    _old_forms(args)
    common.check(args, OPTIONS)
    kw = keywords(args)
    out = common.writable_file(args.out, "--out", "grid.json")  # before the tuning: its work is never lost
    common.set_threads(args)
    from ..tuning import tune

    solver = kw.pop("solver")
    tuned = tune(args.problem, solver, args.nfe, **kw)
    path = tuned.save(out)
    held = "—" if tuned.heldout_error is None else f"{tuned.heldout_error:.4g}"
    held0 = "—" if tuned.start_heldout_error is None else f"{tuned.start_heldout_error:.4g}"
    val = "" if tuned.validation_error is None else f", validation {tuned.validation_error:.4g}"
    print(f"{tuned.solver} NFE {tuned.nfe} on {tuned.problem}: RMSE train {tuned.train_error:.4g} "
          f"(start {tuned.start}: {tuned.start_train_error:.4g}){val}, held-out {held} (start {held0}); "
          f"chosen: {tuned.chosen}{' (decoupled evaluation times)' if tuned.decoupled else ''}")
    print(f"cost: {tuned.cost_nfe} model evaluations, {tuned.cost_seconds:.1f} s wall, "
          f"{tuned.cost_cpu_seconds:.1f} s CPU; wrote {path} (use --grid file:{path})")
    return EXIT_OK
