"""`diffsolve tune`: tune a step grid to a problem, a solver and an NFE budget; write a grid file (ds.grids.tune), or
with --learn a learned solver's file (ds.solvers.learn: the solver's weights learned with the grid).

Every argument left out takes `diffsolve.tuning.tune`'s own default (read from its signature for the help), so
the command line and Python tune the same grid for the same inputs.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from ..checks import Option
from ..errors import DiffsolveError
from . import common
from .common import EXIT_OK
from .tune_report import report, report_learned

OPTIONS = (Option("--n", "int", None, "draws of x_T per seed", low=1, optional=True),
           Option("--candidates", "int", None, "candidate times of the dynamic programme", low=3, optional=True),
           Option("--max-evals", "int", None, "objective evaluations per refinement stage (default: 12 + 2 per "
                  "tuned parameter with exact gradients, 100 solver runs per parameter with finite differences)",
                  low=1, optional=True),
           Option("--restarts", "int", None, "refine from this many of the best starts", low=1, optional=True),
           Option("--teacher-nfe", "int", None, "the teacher's steps (default: 2·(candidates − 1), doubled until "
                  "its measured error is ≤ 0.1× the training error reached)", low=1, optional=True),
           Option("--teacher-tol", "float", None, "the RMSE the teacher must reach, measured against itself at "
                  "twice the steps (default: 0.1× the training error reached)", low=0, open_low=True,
                  optional=True),
           Option("--max-seconds", "float", None, "stop the refinement at the best grid so far after this many "
                  "seconds (refused up front if the teacher and fixed stages alone need longer)", low=0,
                  open_low=True, optional=True),
           Option("--trim", "float", None, "the fraction of draws the robust objectives set aside", low=0,
                  open_low=True, high=0.5, open_high=True, optional=True),
           Option("--batch-size", "int", None, "draws per chunk: the unit of work and of the dealing to torchrun's "
                  "ranks", low=1, optional=True),
           common.THREADS)
SEEDS = {"--train-seeds": "seeds of the training draws", "--heldout-seeds": "seeds of the held-out draws ('' for "
         "none)", "--validation-seeds": "seeds of the validation draws that choose among the start and the "
         "refinements ('' for none: the training error chooses; default: each training seed + 7919)"}


def _defaults() -> dict[str, Any]:
    from ..tuning import tune

    return {k: p.default for k, p in inspect.signature(tune).parameters.items() if p.default is not p.empty}


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from ..tuning import GRADIENTS, METHODS, OBJECTIVES, OPTIMIZERS

    d = _defaults()
    p = sub.add_parser("tune", help="tune a step grid to a model, a solver and an NFE; writes a grid file",
                       description="Minimise the solver's end-point error to a teacher (a high-NFE solve in the "
                       "network's dtype, its error measured and cached) on training draws of x_T, by gradients "
                       "through the solver; print training and held-out error and the cost; write a grid file "
                       "that --grid file:OUT loads. Under torchrun the draws are split across the ranks (the "
                       "grid does not depend on their number). Every argument left out takes the default of "
                       "diffsolve.grids.tune.")
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
    p.add_argument("--nfe", required=True, help="the NFE budget the grid is tuned for, or several comma-separated "
                   "(5,6,8,10: one grid file per NFE, OUT-nfeK.json, teacher and DP shared)")
    p.add_argument("--variable", help="the ODE's integration variable: t, sigma or lambda (default: the solver's own)")
    p.add_argument("--objective", choices=OBJECTIVES, help="mean: the MSE to the teacher; trimmed: without the worst "
                   "--trim of the draws; log: c·log(1 + e/c) per draw (default "
                   f"{d.get('objective')}; with --learn the weights' objective, default "
                   f"{d.get('learn_objective')}, the grid keeping tune's)")
    p.add_argument("--gradient", choices=GRADIENTS, help="auto: autograd through the solver where the network "
                   f"allows it, else finite differences (default {d.get('gradient')})")
    p.add_argument("--device", help="where the network runs (default: where its weights are)")
    p.add_argument("--cache-dir", help="the teachers' cache (default $DIFFSOLVE_CACHE or ~/.cache/diffsolve/teachers)")
    p.add_argument("--no-cache", action="store_true", help="solve the teachers again, keep nothing on disk")
    p.add_argument("--checkpoint", action="store_true", help="recompute each network call in the backward pass "
                   "(less memory, one more forward call per call)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars (stderr)")
    p.add_argument("--method", choices=METHODS, help=f"default {d.get('method')}")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="the refinement: L-BFGS-B (gradients by autograd or "
                   f"finite differences, --gradient), or Nelder–Mead (default {d.get('optimizer')})")
    p.add_argument("--no-eval-times", action="store_true", help="tune the step times alone (default: also the "
                   "times the network is evaluated at, for solvers that call it once per grid node)")
    p.add_argument("--learn", action="store_true", help="also learn the solver's weights on its stored outputs with "
                   "the grid (ds.solvers.learn; ipndm, ipndm_v, dpmpp2m/3m, dpm2m/3m, deis, unipc): OUT is then a "
                   "learned solver's file, used as --solver file:OUT")
    p.add_argument("--conditions", type=int, choices=(1, 2), help="with --learn: what each learned step keeps, 1 "
                   "consistency, 2 also the base weights' first moment (default 1)")
    common.add_shape(p)
    p.add_argument("--out", required=True, help="the grid file to write (its folder must exist)")
    p.add_argument("--export", help="also write the grid for another sampler, comma-separated among diffusers (a "
                   "DiffsolveScheduler config folder OUT.diffusers/), k-diffusion (OUT.k-diffusion.json: sigmas "
                   "and the k_sampler call) and sigmas (OUT.sigmas.json; these two need --no-eval-times, but for "
                   "--learn's k-diffusion sampler, which carries them)")
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
    given: dict[str, Any] = {k: getattr(args, k) for k in (
        "n", "candidates", "max_evals", "restarts", "teacher_nfe", "teacher_tol", "max_seconds", "trim", "batch_size",
        "variable", "method", "optimizer", "objective", "gradient", "device", "cache_dir", "shape")}
    if args.no_cache:
        given["cache_dir"] = False
    if args.checkpoint:
        given["checkpoint"] = True
    if args.no_progress:
        given["progress"] = False
    for flag in SEEDS:
        dest = flag.lstrip("-").replace("-", "_")
        text = getattr(args, dest)
        if text is not None:
            given[dest] = [] if not text.strip() else common.int_list(text, flag)
    if args.no_eval_times:
        given["eval_times"] = False
    if args.conditions is not None:
        if not args.learn:
            raise DiffsolveError(f"--conditions {args.conditions} sets what a learned solver keeps; add --learn, or "
                                 f"drop --conditions")
        given["conditions"] = args.conditions
    return {"solver": solver, **options, **{k: v for k, v in given.items() if v is not None}}


def outputs(out: Path, nfes: list[int]) -> dict[int, Path]:
    """The grid file of each NFE: OUT itself for one, OUT-nfeK.json for several."""
    if len(nfes) == 1:
        return {nfes[0]: out}
    return {k: out.with_name(f"{out.stem}-nfe{k}{out.suffix or '.json'}") for k in nfes}


def run(args: argparse.Namespace) -> int:
    _old_forms(args)
    common.check(args, OPTIONS)
    nfes = common.int_list(args.nfe, "--nfe", low=1)
    kw = keywords(args)
    out = common.writable_file(args.out, "--out", "grid.json")  # before the tuning: its work is never lost
    from ..export.files import check_kinds

    given = [] if args.export is None else common.csv_list(common.no_empty(args.export, "--export", "diffusers,sigmas"))
    exports = check_kinds(given, not args.no_eval_times, args.learn)
    common.set_threads(args)
    from ..devices import check_device
    from ..distributed import from_env

    if args.device is not None:
        check_device(args.device, "--device")  # as sample --device: a device this machine lacks is refused first
    from ..tuning import learn, tune

    solver = kw.pop("solver")
    tuned = (learn if args.learn else tune)(args.problem, solver, nfes if len(nfes) > 1 else nfes[0], **kw)
    if not from_env().leader:  # under torchrun: rank 0 writes and reports
        return EXIT_OK
    for t, path in zip(tuned if isinstance(tuned, list) else [tuned], outputs(out, nfes).values()):
        (report_learned if args.learn else report)(t, t.save(path))
        if exports:
            from ..export import write_exports

            print("exported: " + ", ".join(str(p) for p in write_exports(t, path.with_suffix(""), exports)))
    return EXIT_OK
