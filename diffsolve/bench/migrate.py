"""Stores written before cells carried their problem's fingerprint: find their records and adopt them, checked.

A record stored before the `fingerprint` field existed has a key without it, so a rerun of the same suite never finds
it and computes the cell again (appending a second line). `legacy(cells, store)` pairs each cell of a suite with such
a record: the record whose key is the cell's key with an empty fingerprint. `migrate(cells, out)` adopts them: per
problem (fingerprint, schedule, sample count, seed, reference tolerance and cell kind) it recomputes the cheapest
stored cell in memory and compares its numbers with the stored ones (CHECK_FIELDS' tolerances); when every group
agrees it rewrites results.jsonl with the cells' current keys and fingerprints (the other fields as stored, atomically,
under the store's lock). A group that does not reproduce is refused, naming the values: the problem has changed since,
and its cells must be computed again (`--fresh`).
`diffsolve bench … --migrate` runs it before the sweep.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import DiffsolveError
from ..locking import unique_temp
from .cells import run_cell
from .inputs import Inputs
from .store import ResultStore, shard_paths
from .suite import Cell

Record = dict[str, Any]
CHECK_FIELDS = {"nfe": 0.0, "rmse": 1e-6, "rel_err": 1e-6, "max_err": 1e-6, "sw2": 1e-6, "sw2_floor": 1e-6,
                "ref_err": 1.0}  # field → relative tolerance: round-off between BLAS builds passes, a changed problem
# does not; ref_err (the reference's own error, estimated from a second solve) only to within a factor 2


def legacy_key(cell: Cell) -> str:
    """The key the cell had before cells carried a fingerprint."""
    return dataclasses.replace(cell, fingerprint="").key


def legacy(cells: Sequence[Cell], store: ResultStore) -> list[tuple[Cell, Record]]:
    """(cell, stored record) for each cell with a fingerprint that is not stored under its key but under its legacy
    key (each cell once, in the suite's order)."""
    out = []
    for cell in {c.key: c for c in cells}.values():
        old = store.get(legacy_key(cell)) if cell.fingerprint else None
        if old is not None and cell.key not in store and not old.get("fingerprint"):
            out.append((cell, old))
    return out


def _differences(stored: Record, fresh: Record) -> list[str]:
    """The CHECK_FIELDS on which two records of one cell disagree beyond their tolerance."""
    out = []
    for k, rtol in CHECK_FIELDS.items():
        a, b = stored.get(k), fresh.get(k)
        if a is None and b is None:
            continue
        if a is None or b is None or not math.isclose(a, b, rel_tol=rtol, abs_tol=1e-300):
            out.append(f"{k} stored {a!r}, recomputed {b!r}")
    return out


def check(pairs: list[tuple[Cell, Record]], log: Callable[[str], None] = lambda line: None) -> None:
    """Recompute the cheapest stored 'ok' cell of each problem group and compare (module doc); raise a DiffsolveError
    naming the first group that does not reproduce."""
    groups: dict[tuple[Any, ...], list[tuple[Cell, Record]]] = {}
    for cell, rec in pairs:
        if rec.get("status") == "ok":
            groups.setdefault((cell.problem, cell.fingerprint, cell.schedule, cell.n, cell.seed, cell.ref_tol,
                               cell.kind, cell.dtype), []).append((cell, rec))
    inputs = Inputs()
    for (problem, *_), members in groups.items():
        cell, rec = min(members, key=lambda m: (m[1]["nfe"], m[0].key))
        fresh = run_cell(cell, inputs)
        bad = _differences(rec, fresh)
        if bad:
            raise DiffsolveError(
                f"stored results of {problem!r} do not reproduce ({cell.solver_label} {cell.grid} {cell.variable} "
                f"nfe={cell.nfe}: {'; '.join(bad)}): the problem changed since they were stored, so they cannot be "
                f"adopted; compute them again with --fresh")
        log(f"checked {problem!r}: {cell.solver_label} {cell.grid} {cell.variable} nfe={cell.nfe} reproduces its "
            f"stored numbers; adopting {len(members)} records")


def migrate(cells: Sequence[Cell], out: str | Path, *, verify: bool = True, repair: bool = False,
            log: Callable[[str], None] = lambda line: None) -> int:
    """Adopt the legacy records of `cells` in OUT/results.jsonl (module doc); returns how many were re-keyed. With
    `repair`, bad lines are first set aside as ResultStore(…, repair=True) does."""
    path = Path(out) / "results.jsonl"
    if not path.exists():
        return 0
    if shard_paths(path):
        raise DiffsolveError(f"{str(path.parent)!r} holds shards (results.shard-*.jsonl): fold them first with "
                             f"diffsolve bench --merge {path.parent}, then migrate")
    store = ResultStore(path, repair=repair)
    pairs = legacy(cells, store)
    if not pairs:
        return 0
    if verify:
        check(pairs, log)
    renamed = {old["key"]: (cell.key, cell.fingerprint) for cell, old in pairs}
    with store.lock():
        lines = path.read_bytes().split(b"\n")
        kept = []
        for raw in lines:
            if not raw.strip():
                continue
            rec = json.loads(raw)
            if rec.get("key") in renamed and not rec.get("fingerprint"):
                rec["key"], rec["fingerprint"] = renamed[rec["key"]]
                raw = json.dumps(rec, allow_nan=False).encode()
            kept.append(raw + b"\n")
        tmp = unique_temp(path)
        with open(tmp, "wb") as f:
            f.write(b"".join(kept))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return len(pairs)
