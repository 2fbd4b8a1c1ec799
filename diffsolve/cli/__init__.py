"""The `diffsolve` command line: `diffsolve bench | tune | sample | train | likelihood …`.

One module per subcommand (diffsolve.cli.bench, …), each with `add_parser(subparsers)` and `run(args)`; they share
diffsolve.cli.common. `main` runs every subcommand under one handler, from its first line to its last:
- a DiffsolveError (a wrong input) or an OSError about a path → one line `diffsolve CMD: error: …`, exit 2;
- Ctrl-C → one line, exit 130; SIGTERM → one line, exit 143 (handlers installed before torch is imported; the
  `diffsolve` script's entry point, diffsolve.console.main, installs them before it imports this package; a signal
  inside an import is raised once the import is done, and one whose exception was swallowed still ends the command);
- anything else → the traceback is written to a log file named in one line, exit 1;
- a warning raised from diffsolve's own code → one line `diffsolve CMD: warning: …` (others keep Python's form).
Importing this package does not import torch.
"""

from __future__ import annotations

import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..console import honour, signals_raise, stop_status
from ..errors import DiffsolveError
from . import bench, likelihood, sample, train, tune
from .common import EXIT_CRASH, EXIT_USAGE, Parser

COMMANDS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], int]]] = {
    "bench": (bench.add_parser, bench.run),
    "train": (train.add_parser, train.run),
    "likelihood": (likelihood.add_parser, likelihood.run),
    "tune": (tune.add_parser, tune.run),
    "sample": (sample.add_parser, sample.run),
}


def build_parser() -> Parser:
    """The top-level parser with one subparser per entry of COMMANDS."""
    from .. import __version__

    parser = Parser(prog="diffsolve", description="Diffusion sampling as differential equations.")
    parser.add_argument("--version", action="version", version=f"diffsolve {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (make, _) in COMMANDS.items():
        make(sub).set_defaults(command=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the command line (diffsolve.console.main calls it); returns the exit status."""
    with signals_raise():
        argv = sys.argv[1:] if argv is None else list(argv)
        command = "diffsolve" + next((f" {a}" for a in argv[:1] if a in COMMANDS), "")
        status, command = _run(argv, command)
        return honour(status, command)  # a signal whose exception was swallowed still ends the command as one


def _run(argv: list[str], command: str) -> tuple[int, str]:
    """Parse and run the command under the one handler; (exit status, the command's name for messages)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            return _say(f"diffsolve: error: give a command, one of {', '.join(COMMANDS)} (see `diffsolve --help`)",
                        EXIT_USAGE), command
        command = f"diffsolve {args.command}"
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(command, warnings.showwarning)
            return COMMANDS[args.command][1](args), command
    except DiffsolveError as e:
        return _say(f"{command}: error: {e}", EXIT_USAGE), command
    except KeyboardInterrupt as e:
        status, what = stop_status(e)
        return _say(f"{command}: {what}", status), command
    except OSError as e:
        if e.filename is None:
            return _crashed(command, e, argv), command
        where = repr(e.filename) + ("" if e.filename2 is None else f" → {e.filename2!r}")
        if isinstance(e, FileExistsError):  # mkdir on a path that is a file: a folder is needed there
            return _say(f"{command}: error: {where} exists and is not a folder, but a folder is needed there; move "
                        f"it away or choose another --out", EXIT_USAGE), command
        return _say(f"{command}: error: {e.strerror or e}: {where}; check the path", EXIT_USAGE), command
    except Exception as e:  # noqa: BLE001 — the one place an unexpected error is reported
        return _crashed(command, e, argv), command


def _one_line_warnings(command: str, default: Callable[..., None]) -> Callable[..., None]:
    """showwarning for one command: diffsolve's own warnings as `diffsolve CMD: warning: …`, others by `default`."""
    package = str(Path(__file__).resolve().parents[1])

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if str(Path(filename).resolve()).startswith(package):
            print(f"{command}: warning: {message}", file=sys.stderr if file is None else file)
        else:
            default(message, category, filename, lineno, file, line)
    return show


def _say(line: str, status: int) -> int:
    print(line, file=sys.stderr)
    return status


def _crashed(command: str, e: BaseException, argv: list[str]) -> int:
    """Keep the traceback in a log file and say where in one line; exit status 1."""
    import tempfile
    import time

    text = "".join(traceback.format_exception(e))
    try:
        with tempfile.NamedTemporaryFile("w", prefix=f"diffsolve-{time.strftime('%Y%m%d-%H%M%S')}-",
                                         suffix=".log", delete=False, encoding="utf-8") as f:
            f.write(f"diffsolve {' '.join(argv)}\n\n{text}")
        where = f"the traceback is in {Path(f.name)}"
    except OSError:
        print(text, file=sys.stderr, end="")
        where = "the traceback is above"
    first = str(e).splitlines()[0][:200] if str(e) else ""
    return _say(f"{command}: internal error ({type(e).__name__}: {first}); {where}; please report it", EXIT_CRASH)
