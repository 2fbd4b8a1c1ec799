"""Paths the user names, written by the Python API: an OS error becomes a DiffsolveError naming the path and the fix.

`make_folder` (a folder, created with its parents) and `write_text` (a file, its folder created) are what the API
writers call (grids.save; the bench's results folder may use them too), so a path under a file, a folder without
write permission or a full disk reads the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

from .checks import Option
from .errors import DiffsolveError


def _why(path: Path, e: OSError) -> str:
    blocker = next((a for a in (path, *path.parents) if a.exists() and not a.is_dir()), None)
    if blocker is not None and blocker != path:
        return f"{str(blocker)!r} is a file, not a folder"
    return e.strerror or type(e).__name__


def make_folder(path: str | Path, what: str, error: type[DiffsolveError] = DiffsolveError) -> Path:
    """The folder `path`, created with its parents; refused (as `error`) when a file is in the way or it cannot be
    made."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise error(f"{what} {str(p)!r} is a file; give a folder (created if missing)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise error(f"cannot make {what} {str(p)!r}: {_why(p, e)}; give a folder you can write to") from None
    return p


def write_text(path: str | Path, text: str, what: str, error: type[DiffsolveError] = DiffsolveError) -> Path:
    """Write `text` to the file `path` (UTF-8), creating its folder; an OS error is `error` naming the path."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    except OSError as e:
        raise error(f"cannot write {what} {str(p)!r}: {_why(p, e)}; give a path in a folder you can write to") from None
    return p


def named_path(path: str | Path, flag: str, what: str) -> Path:
    """The path given to `flag`; '' (an unset shell variable) is refused, not read as the current folder."""
    if isinstance(path, str):
        Option(flag, "str", doc=f"a {what} path").check(path, fix=f"give a {what} path (write . for the current "
                                                              f"folder)")
    return Path(path)
