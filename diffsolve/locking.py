"""Inter-process file locks (fcntl.flock) for the result store, per-cell claims and the reference cache.

An flock belongs to an open file: the kernel releases it when the holder closes the file or dies
(SIGKILL included), so a crashed process never leaves a stale lock. On systems without fcntl
(Windows), or on a file system without flock (some network mounts; a warning says so), the
locks are no-ops: run one process per output folder there.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover — Windows
    fcntl = None  # type: ignore[assignment]


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


_warned: list[str] = []


def _acquire(fd: int, blocking: bool) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError as e:  # a file system without flock (some network mounts): go on unlocked, say so once
        if not _warned:
            _warned.append(str(e))
            warnings.warn(f"file locks are not available here ({e}); run one process per output folder",
                          RuntimeWarning, stacklevel=3)
    return True


@contextmanager
def locked(path: str | Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on the file `path` (created if missing) inside the with-block.

    Yields True when the lock is held; with blocking=False it yields False at once if another
    process holds it (the block then runs without the lock and must do nothing that needs it).
    """
    fd = _open(Path(path))
    try:
        yield _acquire(fd, blocking)
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def claim(folder: str | Path, name: str, *, blocking: bool = False) -> Iterator[bool]:
    """Claim the unit of work `name` for this process: an exclusive lock on folder/<hash of name>.

    Yields whether the claim is held. When the block ends normally (its result durable) the lock
    file is removed; a process that opened it just before and then gets its lock must re-check
    whether the work is done (it is). A block left by an exception keeps the file, so that every
    waiter contends for the same lock.
    """
    path = Path(folder) / hashlib.sha256(name.encode()).hexdigest()[:32]
    fd = _open(path)
    try:
        got = _acquire(fd, blocking)
        yield got
        if got:
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def unique_temp(path: Path) -> Path:
    """A temporary name next to `path` that no other process or thread uses (pid + random suffix)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
