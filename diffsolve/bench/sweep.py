"""The sweep runner: every cell not already in the store is run and its record appended at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .cells import Inputs, run_cell
from .store import ResultStore
from .suite import Cell

Record = dict[str, Any]


def run_sweep(
    cells: Sequence[Cell],
    store: ResultStore | str | Path,
    *,
    progress: bool = True,
    retry_failed: bool = False,
    on_record: Callable[[Record, bool], None] | None = None,
    inputs: Inputs | None = None,
) -> list[Record]:
    """Run the cells missing from `store` (a ResultStore or a .jsonl path) and return all their records.

    Finished cells found in the store are skipped (failed ones too, unless retry_failed); each new
    record is appended and fsynced before the next cell starts, so an interrupt loses at most the
    cell in flight. on_record(record, fresh) is called for every cell, stored ones first.
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    inputs = inputs or Inputs()
    unique = list({c.key: c for c in cells}.values())

    def pending(c: Cell) -> bool:
        rec = store.get(c.key)
        return rec is None or (retry_failed and rec.get("status") == "failed")

    todo = [c for c in unique if pending(c)]
    if on_record is not None:
        for c in unique:
            if not pending(c):
                on_record(store.records[c.key], False)
    with tqdm(total=len(unique), initial=len(unique) - len(todo), unit="cell", disable=not progress,
              dynamic_ncols=True, desc="bench") as bar:
        for cell in todo:
            bar.set_postfix_str(f"{cell.solver_label} {cell.grid} {cell.variable} nfe={cell.nfe}", refresh=False)
            record = run_cell(cell, inputs)
            store.append(record)
            bar.update(1)
            if on_record is not None:
                on_record(record, True)
    return [store.records[c.key] for c in unique]
