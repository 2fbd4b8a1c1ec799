"""`diffsolve likelihood`: PF-ODE log-likelihood (bits/dim) of a shipped model or a checkpoint on held-out data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..checks import Option
from ..errors import DiffsolveError
from . import common
from .common import EXIT_OK

OPTIONS = (Option("--n", "int", None, "held-out points (toy: 1000; digits: all 297)", low=1, optional=True),
           Option("--seed", "int", 0, "seeds data, dequantization and probes", low=0),
           Option("--probes", "int", 1, "Hutchinson probes per evaluation", low=1),
           Option("--probe-seed", "int", None, "seed of the Hutchinson probes (default: --seed)", low=0,
                  optional=True),
           Option("--rtol", "float", 1e-5, "relative tolerance of the adaptive solve", low=0, open_low=True, high=1,
                  open_high=True),
           Option("--atol", "float", 1e-5, "absolute tolerance of the adaptive solve", low=0, open_low=True, high=1,
                  open_high=True),
           common.THREADS)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from .. import likelihood

    p = sub.add_parser("likelihood", help="PF-ODE log-likelihood (bits/dim) of a shipped model or a checkpoint "
                                          "on held-out data", description=likelihood.pretrained_likelihood.__doc__)
    p.add_argument("--problem", help="a shipped model (toy-2d, toy-2d-flow, digits-8x8) or a checkpoint written by "
                   "`diffsolve train`")
    p.add_argument("model", nargs="?", help="the same as --problem")
    for option in OPTIONS:
        common.add_option(p, option)
    p.add_argument("--divergence", choices=likelihood.DIVERGENCES, default=None,
                   help="exact trace or Hutchinson (default: exact for toy-2d, hutchinson for digits)")
    return p


def run(args: argparse.Namespace) -> int:
    from .. import nets

    if (args.problem is None) == (args.model is None):
        raise DiffsolveError("give the model once: --problem toy-2d (or a checkpoint written by `diffsolve train`)")
    name = args.problem or args.model
    common.check(args, OPTIONS)
    if name not in nets.PRETRAINED and not Path(name).is_file():
        raise DiffsolveError(f"unknown model {name!r}; give {' or '.join(nets.PRETRAINED)} or the path of a "
                             f"checkpoint written by `diffsolve train`")
    common.set_threads(args)
    from ..likelihood import pretrained_likelihood

    out = pretrained_likelihood(name, n=args.n, seed=args.seed, divergence=args.divergence, probes=args.probes,
                                probe_seed=args.probe_seed, rtol=args.rtol, atol=args.atol)
    width = max(map(len, out))
    for k, v in out.items():
        print(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return EXIT_OK
