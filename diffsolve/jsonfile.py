"""Reading a JSON file the user named, with a message that says what kind of file it should have been.

`read_json(path, what, fix)`: a missing, unreadable, non-UTF-8 or non-JSON file raises one DiffsolveError naming `what`
("learned solver file", …), the path, the reason and `fix` (how such a file is written), so that each kind of file
gets its own fix instead of another kind's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import DiffsolveError


def read_json(path: str | Path, what: str, fix: str, *, error: type[DiffsolveError] = DiffsolveError) -> Any:
    """The JSON value in `path` (UTF-8); `error` naming `what`, the path and `fix` when it cannot be had."""
    p = Path(path)
    if not p.is_file():
        why = "is a folder" if p.is_dir() else "does not exist"
        raise error(f"{what} {str(path)!r} {why}; {fix}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{what} {str(path)!r} is not valid JSON in UTF-8 ({type(e).__name__}: {e}); {fix}") from None
    except OSError as e:
        raise error(f"{what} {str(path)!r} cannot be read ({e.strerror or e}); check its permissions") from None
