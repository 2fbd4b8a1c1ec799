"""What the subcommands share: exit codes, the parser, one vocabulary of arguments, their checks, destinations.

Every subcommand names a problem with `--problem`, a solver with `--solver NAME:KEY=VALUE:…` and a grid with
`--grid SPEC`; numbers are described by `diffsolve.checks.Option`s and checked after parsing with `check`, so a
wrong value gets the one message form of the validation layer. Destinations are checked before any work:
`writable_folder` (bench, sample) and `writable_file` (tune, train). Nothing here imports torch at import.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checks import Option
from ..console import EXIT_INTERRUPTED, EXIT_TERMINATED  # noqa: F401 (the exit statuses, all here)
from ..errors import DiffsolveError
from ..threads import checked_threads, threads_option
from ..userpaths import named_path

EXIT_OK, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_ALL_FAILED = 0, 2, 3, 4
EXIT_CRASH = 1
PROBLEM_HELP = ("a registered problem (see `diffsolve bench --list`), pkg.module:attr, path/to/file.py:attr (attr: a "
                "Problem, a diffsolve Model or a zero-argument function returning one; the file's folder is put on "
                "the import path) or a checkpoint written by `diffsolve train`")
SOLVER_HELP = "NAME or NAME:KEY=VALUE:… with solver options, e.g. ipndm:order=3 (see `diffsolve bench --list`)"
GRID_HELP = ("time, logsnr, quadratic, karras, with parameters after ':' (karras:rho=5), custom:T0,T1,… or "
             "file:GRID.json")
THREADS = threads_option("--threads")


class UsageError(DiffsolveError):
    """A command line that does not parse (unknown option, missing argument, a value of the wrong type)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: a usage error is raised as a DiffsolveError for the one top-level handler."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # a value that starts with '-' and a digit (--shard -1/2, --seeds -1,2) is the option's value, so its own
        # check names it, rather than "expected one argument"
        self._negative_number_matcher = re.compile(r"^-\d")

    def error(self, message: str) -> Any:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def add_option(p: argparse.ArgumentParser, option: Option, help: str = "", **kw: Any) -> None:
    """An argument described by an Option: parsed as its kind, its default, its doc as help; `check` checks it."""
    kind = {"int": int, "float": float}.get(option.kind, str)
    default = "" if option.default is None else f" (default {option.default})"
    p.add_argument(option.name, type=kind, default=option.default, help=(help or option.doc) + default, **kw)


def check(args: argparse.Namespace, options: Sequence[Option]) -> None:
    """Check each option's value in `args` (its dest is the flag without dashes); raise the validation layer's
    DiffsolveError naming the flag, the value and what was expected."""
    for option in options:
        dest = option.name.lstrip("-").replace("-", "_")
        default = (f" or leave it out for {option.default}" if option.default is not None
                   else " or leave it out" if option.optional else "")
        setattr(args, dest, option.check(getattr(args, dest), fix=f"give a valid {option.name}{default}"))


def add_problem(p: argparse.ArgumentParser, *, required: bool = False, many: bool = False, extra: str = "") -> None:
    p.add_argument("--problem", required=required,
                   help=("problems, comma-separated: each " if many else "") + PROBLEM_HELP + extra)


def add_solver(p: argparse.ArgumentParser, *, required: bool = False, many: bool = False, extra: str = "") -> None:
    p.add_argument("--solver", required=required, help=("solvers, comma-separated: each " if many else "")
                   + SOLVER_HELP + extra)


def add_grid(p: argparse.ArgumentParser, *, many: bool = False, default: str | None = None, extra: str = "") -> None:
    p.add_argument("--grid", default=default, help=("step grids, comma-separated: " if many else "a step grid: ")
                   + GRID_HELP + extra)


def add_shape(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shape", type=shape, default=None, help="the shape of one sample for a problem given as a "
                   "Model, e.g. 3,32,32 (default: the model's `shape` attribute)")


def set_threads(args: argparse.Namespace) -> None:
    """torch's intra-op CPU threads from the checked --threads."""
    import torch

    torch.set_num_threads(checked_threads(args.threads, THREADS.name))


def sweep_run(args: argparse.Namespace, defaults: dict[str, str]) -> dict[str, Any]:
    """The run (diffsolve.bench.expand_run) of bench's sweep axes: each given one (none of its values empty), else
    its default. Without --nfe, a sweep whose grids all have their own times (custom:, file:) runs at their cost."""
    from ..grids import parse

    ax = {a: defaults[a] if getattr(args, a) is None else no_empty(getattr(args, a), f"--{a}", defaults[a])
          for a in defaults}
    run = {"problems": csv_list(ax["problem"]), "solvers": csv_list(ax["solver"]), "grids": grid_list(ax["grid"]),
           "variables": csv_list(ax["variable"])}
    if args.nfe is not None or not all(parse(g).fixed for g in run["grids"]):
        run["nfe"] = int_list(ax["nfe"], "--nfe", low=1)
    for key, values in run.items():
        distinct(values, "--" + {"problems": "problem", "solvers": "solver", "grids": "grid",
                                 "variables": "variable"}.get(key, key))
    return run


def distinct(values: list[Any], flag: str) -> list[Any]:
    """values, unless one is listed twice (a sweep axis lists each value once, as tune's --nfe does)."""
    twice = sorted({str(v) for v in values if values.count(v) > 1})
    if twice:
        raise DiffsolveError(f"{flag} lists {', '.join(map(repr, twice))} more than once; give each value once")
    return values


def no_empty(text: str, flag: str, default: str) -> str:
    """text, unless it or one of its comma-separated values is empty ('' from an unset shell variable, 5,,10): that
    is a wrong input, not a request for the default."""
    if any(not piece.strip() for piece in text.split(",")):
        raise DiffsolveError(f"{flag} {text!r} has an empty value; give comma-separated values, e.g. {flag} "
                             f"{default}, or leave {flag} out for that default")
    return text


def csv_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def int_list(text: str, flag: str, *, low: int = 0) -> list[int]:
    """Comma-separated integers, each >= low."""
    try:
        values = [int(s) for s in csv_list(text)]
    except ValueError:
        values = []
    if not values or any(v < low for v in values):
        raise DiffsolveError(f"{flag} takes comma-separated integers >= {low}, e.g. {low},{low + 1}; got {text!r}")
    return values


def number_list(text: str, flag: str) -> list[float]:
    """Comma-separated numbers (their values are checked where they are used)."""
    try:
        return [float(x) for x in csv_list(text)]
    except ValueError:
        raise DiffsolveError(f"{flag} takes comma-separated numbers, e.g. 1e-3,1e-5; got {text!r}") from None


def grid_list(text: str) -> list[str]:
    """Comma-separated grid specs; a piece that does not name a grid continues a custom grid's times (so a time
    that is not a number is named by the custom grid's check)."""
    from ..grids import DEFERRED, GRIDS

    names = {*GRIDS, *DEFERRED, "custom", "file"}
    out: list[str] = []
    for piece in csv_list(text):
        if out and out[-1].startswith("custom:") and piece.partition(":")[0].strip() not in names:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def shape(text: str) -> list[int]:
    """'3,32,32' → [3, 32, 32] (argparse type of --shape)."""
    try:
        dims = [int(s) for s in csv_list(text)]
    except ValueError:
        dims = []
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"expected one sample's shape as positive integers, e.g. 3,32,32; got "
                                         f"{text!r}")
    return dims


def writable_folder(path: str | Path, flag: str) -> Path:
    """The folder (created if missing), checked to be a folder this process can write into."""
    p = named_path(path, flag, "folder")
    if p.exists() and not p.is_dir():
        raise DiffsolveError(f"{flag} {str(p)!r} is a file; give a folder (created if missing)")
    blocker = next((a for a in p.parents if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        raise DiffsolveError(f"{flag} {str(p)!r} lies under {str(blocker)!r}, which is a file; give another folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        raise DiffsolveError(f"{flag} {str(p)!r}: cannot write there ({e.strerror or e}); give a folder you can "
                             f"write to") from None
    return p


def writable_file(path: str | Path, flag: str, example: str) -> Path:
    """A file path whose folder exists and can be written into (the file itself is not created)."""
    p = named_path(path, flag, "file")
    if p.is_dir():
        raise DiffsolveError(f"{flag} {str(p)!r} is a folder; give a file path such as {str(p / example)!r}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        what = "is a file" if parent.exists() else "does not exist"
        raise DiffsolveError(f"{flag} {str(p)!r}: its folder {str(parent)!r} {what}; create the folder first "
                             f"(mkdir -p {parent}) or give another path")
    if (p.exists() and not os.access(p, os.W_OK)) or not _can_create_in(parent):
        raise DiffsolveError(f"{flag} {str(p)!r}: cannot write there; give a path you can write to")
    return p


def _can_create_in(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False
