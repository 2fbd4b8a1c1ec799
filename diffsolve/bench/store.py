"""The result store: one JSON object per finished cell, appended, flushed and fsynced at once.

Files in the store's folder, for a store at OUT/results.jsonl:
  results.jsonl            the records (one writer at a time: every append holds the lock)
  results.shard-*.jsonl    per-process shards (scale-out); read with results.jsonl, merged by key
  results.jsonl.lock       the lock every reader/writer takes (fcntl.flock; released if a process dies)
  .results.jsonl.claims/   per-cell claims: a cell is computed by one process at a time
  results.bad.jsonl        lines set aside by `repair` (line number, reason and the raw text)

Every line is checked against the record schema when read (`check_line`: JSON, the outcome, the cell's
parameters present, every known field of its type (errors, times and tolerances >= 0), every number finite —
`1e999` reads as inf and is refused). A kill during a write can leave at most one partial last line; it is cut
off when the store is read under the lock, so the interrupted cell simply runs again. Any other bad line raises
StoreError naming its line, unless the store is opened with repair=True, which moves such lines to results.bad.jsonl
so that their cells run again. Merging is idempotent: an 'ok' record beats a 'failed' one for the same key,
otherwise the later line wins (results.jsonl first, then the shards in name order); `merge_shards` folds the
shards into results.jsonl. `ResultStore(None)` (MemoryStore) keeps the records in memory only.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from ..errors import DiffsolveError
from ..locking import claim, locked, unique_temp
from ..userpaths import make_folder

Record = dict[str, Any]
STATUSES = ("ok", "failed")


class StoreError(DiffsolveError):
    """A results file that cannot be used as it is: a bad line, or a path that is not a file."""


def json_safe(record: Record) -> Record:
    """The record with every NaN/±Inf float replaced by null, listed in record['nonfinite'].

    Non-finite values would make the line invalid JSON. A record holding any (a diverged solve, a
    NaN option) is stored with status 'failed' and an error naming them, never as 'ok'.
    """
    found: dict[str, str] = {}

    def walk(v: Any, where: str) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            found[where] = repr(v)
            return None
        if isinstance(v, dict):
            return {k: walk(x, f"{where}.{k}" if where else str(k)) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x, f"{where}[{i}]") for i, x in enumerate(v)]
        return v

    out = walk(record, "")
    if found:
        out["nonfinite"] = found
        if out.get("status") == "ok":
            named = ", ".join(f"{k}={v}" for k, v in found.items())
            out["status"] = "failed"
            out["error"] = (f"non-finite value(s) {named}: the solve diverged or an input was NaN/Inf; "
                            f"stored as null (see 'nonfinite')")
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"the non-JSON number {name}")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# The record schema: the cell's parameters (required: the report groups and labels by them) and the known
# measurements, each with the type it must have; other fields may hold any JSON value (numbers finite).
CELL_FIELDS = ("problem", "schedule", "solver", "grid", "variable", "kind", "nfe_target", "seed", "n")
_TEXT = ("key", "problem", "schedule", "solver", "grid", "variable", "kind", "dtype", "options_label",
         "fingerprint", "traceback", "tune_start", "tune_chosen", "data", "features")
_INT = ("nfe", "steps", "nfe_target", "seed", "n", "sw2_projections", "repeats", "tune_nfe", "flips", "data_n")
_NUMBER = ("seconds", "rmse", "rel_err", "max_err", "ref_err", "sw2", "sw2_floor", "ref_tol", "tol", "tune_seconds",
           "tune_cpu_seconds", "tune_train_error", "order_theory", "mean_err", "cov_err", "mean_err_floor",
           "cov_err_floor", "err_median", "err_p90", "data_sw2", "data_sw2_floor", "data_mmd2", "data_mmd2_floor",
           "data_fd", "data_fd_floor")
_TABLE = ("options", "params", "nonfinite")
# numbers that may be below 0: the unbiased MMD² (mean 0 for equal laws), the Fréchet distance (round-off near 0)
_SIGNED = ("order_theory", "data_mmd2", "data_fd", "data_fd_floor")
SCHEMA: dict[str, tuple[str, Any]] = {
    **{k: ("a string", lambda v: isinstance(v, str)) for k in _TEXT},
    **{k: ("an integer >= 0 (counts, seeds and sizes are never negative)",
           lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0) for k in _INT},
    **{k: ("a number", _number) if k in _SIGNED else ("a number >= 0 (errors, times and tolerances are never "
                                                       "negative)", lambda v: _number(v) and v >= 0)
       for k in _NUMBER},
    **{k: ("an object", lambda v: isinstance(v, dict)) for k in _TABLE},
    "error": ("a string", lambda v: isinstance(v, str)),
}
NULLABLE = set(_NUMBER) | {"error", "steps", "nfe", "tune_nfe", "tune_start", "tune_chosen", "traceback", "flips",
                           "data_n"}


def _nonfinite(v: Any, where: str = "") -> str | None:
    """The path of the first non-finite number in v (e.g. 'rmse' or 'options.eta'), else None."""
    if isinstance(v, float) and not math.isfinite(v):
        return where or "the value"
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, x in items:
        found = _nonfinite(x, f"{where}.{k}" if where else str(k))
        if found is not None:
            return found
    return None


def _schema_error(rec: dict[str, Any]) -> str | None:
    """Why the record does not fit the schema (a field of the wrong type, missing or non-finite), else None."""
    for k, v in rec.items():
        if k in SCHEMA and not (v is None and k in NULLABLE) and not SCHEMA[k][1](v):
            shown = repr(v) if len(repr(v)) <= 60 else repr(v)[:57] + "..."
            return f"field {k!r} must be {SCHEMA[k][0]}{' or null' if k in NULLABLE else ''}, got {shown}"
    missing = [k for k in CELL_FIELDS if k not in rec]
    if missing:
        return f"field(s) {', '.join(missing)} missing (a record holds its cell's parameters)"
    where = _nonfinite(rec)
    if where is not None:
        return f"a non-finite number in {where} (a value beyond the float range, such as 1e999, reads as inf)"
    return None


def check_line(raw: bytes) -> Record | str:
    """The record on one line, or the reason it is not a usable record (see the module doc)."""
    try:
        rec = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError and NaN/Infinity literals
        return f"not valid JSON ({type(e).__name__}: {str(e)[:200]})"
    if not isinstance(rec, dict):
        return f"not a JSON object but a {type(rec).__name__}"
    if not isinstance(rec.get("key"), str):
        return "no 'key' string"
    if "status" not in rec:
        return "a record without an outcome (no 'status') or measurements"
    if rec.get("status") not in STATUSES:
        return f"status {rec.get('status')!r} is not one of {', '.join(STATUSES)}"
    if rec["status"] == "ok" and (isinstance(rec.get("nfe"), bool) or not isinstance(rec.get("nfe"), int)):
        return "a record without measurements (status 'ok' but no integer 'nfe')"
    if rec["status"] == "ok" and rec.get("kind") == "ode" and "rmse" in rec and rec["rmse"] is None:
        return "an 'ok' ODE record with rmse null (a cell whose error is not a number is stored as failed)"
    if rec["status"] == "failed" and not isinstance(rec.get("error"), str):
        return "a failed record without an 'error' message"
    return _schema_error(rec) or rec


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back inside the block (main thread): a line is written and recorded whole.

    Their handlers are swapped for a recorder, so even a signal that arrived just before the block
    runs its handler only after it; then the original handler runs (raising KeyboardInterrupt, …).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    names = [signal.SIGINT, signal.SIGTERM]
    old = {s: signal.signal(s, lambda signum, frame: caught.append((signum, frame))) for s in names}
    try:
        yield
    finally:
        for s in names:
            signal.signal(s, old[s])
        for signum, frame in caught[:1]:
            handler = old[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


class ResultStore:
    """JSON-lines file(s) of cell records keyed by record['key'], safe for several processes at once.

    `shard` (e.g. "rank3") makes this process append to results.shard-rank3.jsonl instead of the
    main file; every store reads all of them. `repair=True` moves bad lines to results.bad.jsonl.
    `path=None`: the records live in this object only (no files, no locks, no other process).
    """

    def __init__(self, path: str | Path | None, *, repair: bool = False, shard: str | None = None):
        self.records: dict[str, Record] = {}
        self._read: dict[Path, tuple[int, int]] = {}  # file → (bytes read, lines read)
        self.path = None if path is None else Path(path)
        if self.path is None:
            return
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise StoreError(f"the results folder {str(self.path.parent)!r} is a file, not a folder; "
                             f"give another --out folder or move the file away")
        if self.path.is_dir():
            raise StoreError(f"the results file {str(self.path)!r} is a folder; remove or rename it, "
                             f"or give another --out folder")
        make_folder(self.path.parent, "the results folder", StoreError)
        stem, suffix = self.path.stem, self.path.suffix
        self.write_path = self.path if shard is None else self.path.with_name(f"{stem}.shard-{shard}{suffix}")
        self.bad_path = self.path.with_name(f"{stem}.bad{suffix}")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.claims_dir = self.path.with_name(f".{self.path.name}.claims")
        with self.lock():
            self._refresh(repair)

    # ---- reading --------------------------------------------------------------------------------
    def files(self) -> list[Path]:
        """The main file and the shards, in merge order (none in memory)."""
        return [] if self.path is None else [self.path, *shard_paths(self.path)]

    def _take(self, rec: Record) -> None:
        old = self.records.get(rec["key"])
        if old is None or not (old["status"] == "ok" and rec["status"] != "ok"):
            self.records[rec["key"]] = rec

    def refresh(self) -> None:
        """Read the lines other processes appended since the last read."""
        with self.lock():
            self._refresh(False)

    def _refresh(self, repair: bool) -> None:
        """Read new bytes of every file (the lock is held): cut a partial last line, check the rest."""
        if any(p.exists() and p.stat().st_size < self._read.get(p, (0, 0))[0] for p in self.files()):
            self.records.clear()  # a file was rewritten (repaired) by another process: read all again
            self._read.clear()
        bad: list[tuple[Path, int, str, bytes]] = []
        for p in self.files():
            if not p.exists():
                continue
            if p.is_dir():
                raise StoreError(f"the results file {str(p)!r} is a folder; remove or rename it")
            start, nlines = self._read.get(p, (0, 0))
            with open(p, "rb") as f:
                f.seek(start)
                data = f.read()
            end = data.rfind(b"\n") + 1
            if end < len(data):  # a partial line from a killed writer (writers hold the lock): cut it off
                with open(p, "r+b") as f:
                    f.truncate(start + end)
            for raw in data[:end].split(b"\n")[:-1]:
                nlines += 1
                if not raw.strip():
                    continue
                rec = check_line(raw)
                if isinstance(rec, str):
                    bad.append((p, nlines, rec, raw))
                else:
                    self._take(rec)
            self._read[p] = (start + end, nlines)
        if bad and not repair:
            shown = "; ".join(f"{p.name} line {n}: {why}" for p, n, why, _ in bad[:5])
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise StoreError(
                f"{len(bad)} bad line(s) in the results store: {shown}{more}. Rerun with --repair "
                f"(ResultStore(path, repair=True)) to move them to {self.bad_path.name} and rerun those cells"
            )
        if bad:
            if self.bad_path.is_dir():
                raise StoreError(f"{len(bad)} bad line(s) to set aside, but {str(self.bad_path)!r} is a folder; "
                                 f"remove or rename it, then rerun with --repair")
            self._set_aside(bad)

    def _set_aside(self, bad: list[tuple[Path, int, str, bytes]]) -> None:
        """Append the bad lines to the side file, then rewrite each affected file without them (atomically)."""
        with open(self.bad_path, "a", encoding="utf-8") as f:
            for p, n, why, raw in bad:
                f.write(json.dumps({"file": p.name, "line": n, "reason": why,
                                    "text": raw.decode("utf-8", "replace")}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for p in {b[0] for b in bad}:
            drop = {n for q, n, _, _ in bad if q == p}
            lines = p.read_bytes().split(b"\n")[:-1]
            kept = b"".join(line + b"\n" for i, line in enumerate(lines, 1) if i not in drop)
            tmp = unique_temp(p)
            with open(tmp, "wb") as f:
                f.write(kept)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
            self._read[p] = (len(kept), len(lines) - len(drop))

    # ---- access ---------------------------------------------------------------------------------
    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> Record | None:
        return self.records.get(key)

    def lock(self) -> AbstractContextManager[Any]:
        """Exclusive access to the store's files for the with-block (across processes)."""
        return nullcontext() if self.path is None else locked(self.lock_path)

    def claim(self, key: str, *, wait: bool = False) -> AbstractContextManager[bool]:
        """Context manager yielding whether this process may compute cell `key` (no other one is)."""
        return nullcontext(True) if self.path is None else claim(self.claims_dir, key, blocking=wait)

    def append(self, record: Record) -> Record:
        """Write one record (non-finite values made JSON-safe) as a line, durable before returning.

        Returns the record as stored.
        """
        rec = json_safe(record)
        if self.path is None:
            self._take(rec)
            return rec
        line = (json.dumps(rec, allow_nan=False) + "\n").encode()
        with self.lock():
            self._refresh(False)  # also cuts a partial line a killed writer left at the end
            with signals_deferred():  # Ctrl-C / SIGTERM take effect once the line is durable and recorded
                with open(self.write_path, "ab") as f:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
                start, nlines = self._read.get(self.write_path, (0, 0))
                self._read[self.write_path] = (start + len(line), nlines + 1)
                self._take(rec)
        return rec

    # ---- merging --------------------------------------------------------------------------------
    def merge_shards(self) -> int:
        """Fold the shards into the main file and delete them; returns the number of records.

        Appends to results.jsonl each merged record (the store's rule: 'ok' beats 'failed', else the later line)
        that differs from the one results.jsonl already holds, in the order a single process would have
        written them (the shards' lines dealt back: rank 0's first, rank 1's first, …, rank 0's second, …),
        then deletes the shards, all under the lock. Idempotent; run it when no rank is appending
        (torchrun's rank 0 after the barrier, or `diffsolve bench --merge` once every shard has finished).
        """
        if self.path is None:
            return len(self.records)
        with self.lock():
            self._refresh(False)
            held = _valid_records(self.path)
            order = dict.fromkeys(k for keys in _round_robin([list(_valid_records(p)) for p in
                                                              _by_rank(shard_paths(self.path))]) for k in keys)
            new = b"".join((json.dumps(self.records[k], allow_nan=False) + "\n").encode()
                           for k in order if k in self.records and held.get(k) != self.records[k])
            if new:
                with signals_deferred(), open(self.path, "ab") as f:
                    f.write(new)
                    f.flush()
                    os.fsync(f.fileno())
            for p in shard_paths(self.path):
                p.unlink()
            self.records.clear()
            self._read.clear()
            self._refresh(False)
        return len(self.records)


class MemoryStore(ResultStore):
    """A result store that keeps its records in memory only (ds.bench.run with out=None)."""

    def __init__(self) -> None:
        super().__init__(None)


def _valid_records(path: Path) -> dict[str, Record]:
    """The records of the good lines of one file, by key (the later line wins)."""
    out: dict[str, Record] = {}
    if path.exists():
        for raw in path.read_bytes().split(b"\n"):
            rec = check_line(raw) if raw.strip() else None
            if isinstance(rec, dict):
                out[rec["key"]] = rec
    return out


def _by_rank(paths: list[Path]) -> list[Path]:
    """Shards ordered by their rank number ('rank10-of-12' after 'rank9-of-12'), other names after, by name."""
    def rank(p: Path) -> tuple[int, str]:
        label = p.name.split(".shard-", 1)[-1]
        digits = label[4:].split("-", 1)[0] if label.startswith("rank") else ""
        return (int(digits), "") if digits.isdigit() else (1 << 62, p.name)
    return sorted(paths, key=rank)


def _round_robin(lists: list[list[str]]) -> list[list[str]]:
    """[[a0, b0, …], [a1, b1, …], …] for lists [a0, a1, …], [b0, b1, …]: the inverse of dealing."""
    return [[lst[i] for lst in lists if i < len(lst)] for i in range(max(map(len, lists), default=0))]


def shard_paths(path: Path) -> list[Path]:
    """The shards of the store at `path` (results.shard-*.jsonl beside results.jsonl), in name order."""
    return sorted(path.parent.glob(f"{path.stem}.shard-*{path.suffix}"))


def clear_store(path: str | Path) -> None:
    """Delete a store's records: the main file, its shards, set-aside lines and claims (under its lock)."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    with locked(path.with_name(path.name + ".lock")):
        for p in [path, *shard_paths(path), path.with_name(f"{path.stem}.bad{path.suffix}")]:
            p.unlink(missing_ok=True)
        shutil.rmtree(path.with_name(f".{path.name}.claims"), ignore_errors=True)
