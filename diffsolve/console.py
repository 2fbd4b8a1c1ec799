"""The `diffsolve` console script: SIGINT and SIGTERM handlers first, then the command line.

The script's entry point is this module's `main`, not diffsolve.cli's: importing the command line (argparse, every
subcommand's module) takes tens of milliseconds, and a Ctrl-C or SIGTERM that arrives meanwhile must end the same
way as one that arrives later: one line on stderr, exit status 130 (SIGINT) or 143 (SIGTERM), no traceback. So
`main` installs the handlers before it imports diffsolve.cli. Importing this module imports nothing heavy (`import
diffsolve` is lazy); the handlers and the interrupt's status live here and diffsolve.cli uses them.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

TYPE_CHECKING = False  # typing's, without importing typing (milliseconds at start-up, when no handler is in place)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while a command ran (raised in the main thread like Ctrl-C)."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


def stop_status(e: KeyboardInterrupt) -> tuple[int, str]:
    """(exit status, what happened) of an interrupt: 143 for SIGTERM, else 130."""
    if isinstance(e, Stopped) and e.signum == signal.SIGTERM:
        return EXIT_TERMINATED, "terminated (SIGTERM)"
    return EXIT_INTERRUPTED, "interrupted"


@contextmanager
def signals_raise() -> Iterator[None]:
    """Inside the block SIGINT and SIGTERM raise Stopped in the main thread (an ignored SIGINT stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Stopped(signum)

    names = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
    old = {s: signal.signal(s, handler) for s in names}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `diffsolve` script: the handlers, then diffsolve.cli.main (which keeps them installed)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        with signals_raise():
            from .cli import main as cli_main

            return cli_main(argv)
    except KeyboardInterrupt as e:  # arrived while diffsolve.cli was being imported, or between its handler's ends
        status, what = stop_status(e)
        command = "diffsolve" + next((f" {a}" for a in argv[:1] if a.isidentifier()), "")
        print(f"{command}: {what}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
