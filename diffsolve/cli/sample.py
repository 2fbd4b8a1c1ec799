"""`diffsolve sample`: many samples of one cell, data-parallel (torchrun or --shard i/n; diffsolve.parallel_sample)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..checks import Option
from . import common
from .common import EXIT_OK

OPTIONS = (Option("--nfe", "int", None, "network evaluations per sample (a learned solver's file: its own)", low=1,
                  optional=True),
           Option("--n", "int", None, "number of samples", low=1),
           Option("--batch", "int", 256, "samples per batch", low=1),
           Option("--seed", "int", 0, "sample i uses seed + i for its x_T and noise", low=0),
           common.THREADS)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from .. import parallel_sample

    p = sub.add_parser("sample", help="draw many samples of one cell, data-parallel (torchrun or --shard i/n)",
                       description=parallel_sample.__doc__)
    common.add_problem(p, required=True)
    common.add_solver(p, required=True, extra="; e.g. ddpm, ddim:eta=0.5")
    common.add_grid(p, extra=" (default logsnr; a community name such as 'DPM++ 2M Karras' brings its own)")
    for option in OPTIONS:
        common.add_option(p, option, required=option.default is None and option.name != "--nfe")
    common.add_shape(p)
    p.add_argument("--out", required=True, help="folder for batches/, manifest.json and samples.pt")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="model and state dtype")
    p.add_argument("--device", help="where to sample (default: cuda:LOCAL_RANK under torchrun with CUDA, else cpu)")
    p.add_argument("--shard", help="i/n: this job's share of the batches when started without torchrun")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar (stderr)")
    return p


def run(args: argparse.Namespace) -> int:
    common.check(args, OPTIONS)
    from .. import distributed, parallel_sample
    from ..bench.suite import parse_solver

    common.set_threads(args)
    solver, options = parse_solver(args.solver)
    nfe = args.nfe if args.nfe is not None else learned_nfe(solver)
    job = parallel_sample.SampleJob(problem=args.problem, solver=solver, nfe=nfe, n=args.n, seed=args.seed,
                                    batch=args.batch, grid=args.grid, dtype=args.dtype, options=options,
                                    device=args.device or distributed.default_device(),
                                    shape=None if args.shape is None else tuple(args.shape))
    problem = parallel_sample.prepare(job)  # before joining the process group: a wrong input stops every rank
    out = common.writable_folder(args.out, "--out")
    with distributed.ranked(args.shard) as rank:
        done = parallel_sample.run(job, out, rank, progress=not args.no_progress, problem=problem)
    if done is not None:
        print(f"wrote {done} ({job.n} samples)", file=sys.stderr)
    elif not rank.group:
        print(f"{rank.label}: its batches are in {out}/batches; samples.pt is written by the shard that "
              f"finishes last", file=sys.stderr)
    return EXIT_OK


def learned_nfe(solver: str) -> int:
    """The NFE a learned solver's file was learned for; --nfe is required for any other solver."""
    from ..errors import DiffsolveError
    from ..solvers.learned import FILE, LearnedSolver, is_file_spec

    if not is_file_spec(solver):
        raise DiffsolveError(f"--nfe is required with --solver {solver!r} (only a learned solver's file, "
                             f"'file:learned.json', brings its own); add --nfe K")
    return LearnedSolver.load(solver[len(FILE):]).nfe
