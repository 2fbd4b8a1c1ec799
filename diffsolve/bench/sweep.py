"""The sweep runner: every cell not already in the store is run and its record appended at once.

Several processes may run the same sweep into one store: each cell is claimed before it is computed
(a lock per cell), the store is re-read after the claim, and a cell another process finished is
taken from the store instead of being computed again. Cells claimed by others are left for the end
and then waited for, so a process that dies mid-cell leaves its cell to the survivors.

Before the first cell, each problem's model is called once on two of its x_T (`Problem.check_first_call`): a network
that does not take the problem's shape fails once, naming the shapes, instead of once per cell. Then what the cells
share (references, exact sample sets) is built (`prepare_cells`), each reference with its own bar, so that the cell
bar's rate and ETA measure cells only (a two-minute reference inside the first cell once showed an ETA of an hour).

Scale-out (torchrun ranks or `--shard i/n`): cell k of the suite's list goes to rank k mod n
(diffsolve.distributed.deal, over all cells, so the dealing never depends on what is finished); each
rank appends to its own shard of the store; `ResultStore.merge_shards` folds them into results.jsonl
(diffsolve.bench.ranks runs the whole protocol).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..distributed import Rank, deal
from ..errors import DiffsolveError
from .cells import prepare_cells, run_cell
from .inputs import DTYPE, Inputs
from .store import ResultStore
from .suite import Cell

Record = dict[str, Any]


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived during a sweep (raised like Ctrl-C, so finished cells are kept; exit status 143)."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises Terminated in the main thread instead of killing the process (a handler
    installed by the caller, e.g. the command line's, is left in place)."""
    if threading.current_thread() is not threading.main_thread() or callable(signal.getsignal(signal.SIGTERM)):
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
    check_models(todo, inputs)
    prepare_cells(todo, inputs)  # references before the cell bar starts: its rate and ETA are the cells' own
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


def check_models(cells: Sequence[Cell], inputs: Inputs) -> None:
    """One first call of each problem's model (per schedule and dtype) among `cells`, before any is run.

    A model that fails it (a shape the network does not take, NaN/Inf, …) stops the sweep with one ModelError;
    a problem whose inputs cannot even be made is left to its cells, which record why.
    """
    seen: set[tuple[str, str, str, str]] = set()
    for cell in cells:
        group = (cell.problem, cell.fingerprint, cell.schedule, cell.dtype)
        if group in seen:
            continue
        seen.add(group)
        try:
            problem, schedule, x_T = inputs.problem(cell), inputs.schedule(cell), inputs.x_T(cell)
        except DiffsolveError:
            continue
        problem.check_first_call(cell.problem, schedule, DTYPE[cell.dtype], x_T)
