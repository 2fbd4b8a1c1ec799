"""The `diffsolve` console script: SIGINT and SIGTERM handlers first, then the command line.

The script's entry point is this module's `main`, not diffsolve.cli's: importing the command line (argparse, every
subcommand's module) takes tens of milliseconds, and a Ctrl-C or SIGTERM that arrives meanwhile must end the same
way as one that arrives later: one line on stderr, exit status 130 (SIGINT) or 143 (SIGTERM), no traceback. So
`main` installs the handlers before it imports diffsolve.cli. Importing this module imports nothing heavy (`import
diffsolve` is lazy); the handlers and the interrupt's status live here and diffsolve.cli uses them.

A signal that arrives while a module is being imported (numpy, scipy, torch: most of the first seconds) is not raised
there: an exception inside an import leaves modules half-imported (later a RecursionError or AttributeError from
numpy) or is swallowed by a module that catches everything. The handler sends the signal again every few tens of
milliseconds until it lands outside any import, where Stopped is raised. And a signal is never lost: `honour` ends a
command that returned normally after a signal arrived as interrupted (130/143, the one line).
"""

from __future__ import annotations

import os
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


# The one interrupt of the outermost signals_raise block: the first signal received (None: none yet), and the
# re-delivery of one that arrived inside an import (a threading.Timer, or None). A lock orders the timer's kill
# against the block's end, so a re-delivered signal never reaches a handler the block has already restored.
_STATE: dict[str, Any] = {"depth": 0, "received": None, "timer": None}
_LOCK = threading.Lock()
REDELIVER_S = 0.03  # how long after a signal that arrived inside an import it is sent again


def in_import(frame: Any) -> bool:
    """Whether `frame` or a frame below it runs importlib's bootstrap (a module is being imported)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def received() -> int | None:
    """The signal that arrived inside the current (or last) outermost signals_raise block, if any."""
    return _STATE["received"]


def _redeliver(signum: int) -> None:
    with _LOCK:
        if _STATE["timer"] is not None:  # still inside the block: its handler is ours
            _STATE["timer"] = None
            os.kill(os.getpid(), signum)


def _handler(signum: int, frame: Any) -> None:
    """Raise Stopped, except inside an import: raising there leaves modules half-imported (and a module that catches
    every exception while it imports swallows it), so the signal is sent again shortly, until it lands outside."""
    if _STATE["received"] is None:
        _STATE["received"] = signum
    if in_import(frame) or in_import(sys._getframe(1)):
        with _LOCK:
            if _STATE["timer"] is None and _STATE["depth"] > 0:
                timer = threading.Timer(REDELIVER_S, _redeliver, (signum,))
                timer.daemon = True
                _STATE["timer"] = timer
                timer.start()
        return
    raise Stopped(signum)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Inside the block SIGINT and SIGTERM raise Stopped in the main thread (an ignored SIGINT stays ignored).

    A signal that arrives while a module is being imported is held back and raised once the import is done (see
    _handler); `received()` says, after the block too, whether a signal arrived, so a caller whose code swallowed
    the exception can still end as interrupted. Blocks nest: the outermost one installs and restores the handlers."""
    if threading.current_thread() is not threading.main_thread() or _STATE["depth"]:
        yield
        return
    names = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
    _STATE.update(received=None, timer=None)
    old = {s: signal.signal(s, _handler) for s in names}
    _STATE["depth"] = 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["depth"] = 0
            if _STATE["timer"] is not None:
                _STATE["timer"].cancel()
                _STATE["timer"] = None
        for s, h in old.items():
            signal.signal(s, h)


def honour(status: int, command: str) -> int:
    """`status`, unless a signal arrived in the block and the command did not end as interrupted (its exception was
    swallowed, or it came too late to raise): then the interrupt's one line and status 130/143."""
    signum = received()
    if signum is None or status in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        return status
    code, what = stop_status(Stopped(signum))
    print(f"{command}: {what}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `diffsolve` script and of `python -m diffsolve`: the handlers, then diffsolve.cli.main
    (inside the same block)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = "diffsolve" + next((f" {a}" for a in argv[:1] if a.isidentifier()), "")
    try:
        with signals_raise():
            from .cli import main as cli_main

            status = cli_main(argv)
    except KeyboardInterrupt as e:  # arrived before diffsolve.cli's handler began, or after it ended
        status, what = stop_status(e)
        print(f"{command}: {what}", file=sys.stderr)
        return status
    return honour(status, command)  # cli.main honours a signal too; this covers one in its last instructions


if __name__ == "__main__":
    sys.exit(main())
