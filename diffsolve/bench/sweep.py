"""The sweep runner: every cell not already in the store is run and its record appended at once.

Several processes may run the same sweep into one store: each cell is claimed before it is computed
(a lock per cell), the store is re-read after the claim, and a cell another process finished is
taken from the store instead of being computed again. Cells claimed by others are left for the end
and then waited for, so a process that dies mid-cell leaves its cell to the survivors.

Scale-out (torchrun ranks or `--shard i/n`): cell k of the suite's list goes to rank k mod n
(diffsolve.distributed.deal, over all cells, so the dealing never depends on what is finished); each
rank appends to its own shard of the store; `merge_store` folds the shards into results.jsonl.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..distributed import Rank, deal
from .cells import run_cell
from .inputs import Inputs
from .store import ResultStore, check_line, shard_paths, signals_deferred
from .suite import Cell

Record = dict[str, Any]


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived during a sweep (raised like Ctrl-C, so finished cells are kept; exit status 143)."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises Terminated in the main thread instead of killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_sweep(
    cells: Sequence[Cell],
    store: ResultStore | str | Path,
    *,
    progress: bool = True,
    retry_failed: bool = False,
    on_record: Callable[[Record, bool], None] | None = None,
    inputs: Inputs | None = None,
    rank: Rank | None = None,
) -> list[Record]:
    """Run the cells missing from `store` (a ResultStore or a .jsonl path) and return all their records.

    Finished cells found in the store are skipped (failed ones too, unless retry_failed); each new
    record is appended and fsynced before the next cell starts, so an interrupt loses at most the
    cell in flight. on_record(record, fresh) is called for every cell, stored ones first (fresh is
    False for cells another process stored while this one ran). With a `rank`, only the cells dealt to
    it are run and returned (open the store with shard=rank.label so that each rank has its own file).
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    inputs = inputs or Inputs()
    unique = list({c.key: c for c in cells}.values())
    if rank is not None:
        unique = deal(unique, rank)
    at_start = dict(store.records)

    def pending(c: Cell) -> bool:
        rec = store.get(c.key)
        return rec is None or (retry_failed and rec.get("status") == "failed" and rec is at_start.get(c.key))

    todo = [c for c in unique if pending(c)]
    if on_record is not None:
        for c in unique:
            if not pending(c):
                on_record(store.records[c.key], False)
    with tqdm(total=len(unique), initial=len(unique) - len(todo), unit="cell", disable=not progress,
              dynamic_ncols=True, desc="bench") as bar:

        def attempt(cell: Cell, wait: bool) -> bool:
            """Run `cell` unless another process holds it (then False) or has finished it."""
            with store.claim(cell.key, wait=wait) as mine:
                if not mine:
                    return False
                store.refresh()
                if pending(cell):
                    bar.set_postfix_str(f"{cell.solver_label} {cell.grid} {cell.variable} nfe={cell.nfe}",
                                        refresh=False)
                    record, fresh = store.append(run_cell(cell, inputs)), True
                else:
                    record, fresh = store.records[cell.key], False
            bar.update(1)
            if on_record is not None:
                on_record(record, fresh)
            return True

        deferred = [c for c in todo if not attempt(c, wait=False)]
        for cell in deferred:
            attempt(cell, wait=True)
    return [store.records[c.key] for c in unique]


def merge_store(store: ResultStore) -> int:
    """Fold the shards into results.jsonl and delete them; returns the number of records.

    Appends to results.jsonl each merged record (the store's rule: 'ok' beats 'failed', else the later line)
    that differs from the one results.jsonl already holds, then deletes the shards, all under the store's
    lock. Idempotent; run it when no rank is appending (torchrun's rank 0 after the barrier, or --merge
    once every shard has finished).
    """
    with store.lock():
        store._refresh(False)
        main: dict[str, Record] = {}
        if store.path.exists():
            for raw in store.path.read_bytes().split(b"\n"):
                rec = check_line(raw) if raw.strip() else None
                if isinstance(rec, dict):
                    main[rec["key"]] = rec
        new = b"".join((json.dumps(r, allow_nan=False) + "\n").encode()
                       for k, r in store.records.items() if main.get(k) != r)
        if new:
            with signals_deferred(), open(store.path, "ab") as f:
                f.write(new)
                f.flush()
                os.fsync(f.fileno())
        for p in shard_paths(store.path):
            p.unlink()
        store.records.clear()
        store._read.clear()
        store._refresh(False)
    return len(store.records)
