"""The multi-rank protocol of a sweep into a folder: the same call on every rank, alone or under torchrun.

    outcome = sweep_into(cells, "out")                 # one process, torchrun's ranks, or shard="i/n"

1. This process's Rank: torchrun's environment (joining its process group: gloo on the CPU, nccl on CUDA) or
   `shard="i/n"` for a job array started without torchrun (no group: the jobs share only the folder).
2. With `fresh`, the leader (rank 0) clears the folder's records, cached references and the named report files;
   every rank waits for it (barrier).
3. Each rank runs the cells dealt to it (cell k to rank k mod n, over all cells) into its own store shard (one
   process: into results.jsonl). Ctrl-C or SIGTERM keeps every finished cell (`outcome.interrupted`).
4. Barrier; under torchrun the leader folds the shards into results.jsonl (ResultStore.merge_shards) and then holds
   the whole suite: `outcome.complete`, the process that reports. A job array's shards cannot wait for each
   other: `merge(out)` (`diffsolve bench --merge OUT`) folds them once every job has finished.
Records come back in the cells' order whatever the split, so a merged report is the same as a single run's.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import distributed
from ..distributed import Rank
from ..errors import DiffsolveError
from .inputs import Inputs
from .store import ResultStore, clear_store, shard_paths
from .suite import Cell
from .sweep import run_sweep, sigterm_as_interrupt

Record = dict[str, Any]


@dataclass
class Outcome:
    """What one rank's sweep left: records in the cells' order (the whole suite's where `complete`, else the cells
    dealt to this rank that are stored), the references it solved, and the interrupt that stopped it, if any."""

    records: list[Record]
    rank: Rank
    complete: bool
    interrupted: KeyboardInterrupt | None = None
    references: list[dict[str, Any]] = field(default_factory=list)


def in_order(store: ResultStore, cells: Sequence[Cell], *, rest: bool = False) -> list[Record]:
    """The stored records of `cells` in their order (each key once); with `rest`, then every other stored record."""
    keys = dict.fromkeys(c.key for c in cells)
    if rest:
        keys.update(dict.fromkeys(store.records))
    return [store.records[k] for k in keys if k in store]


def clear_folder(out: Path, files: Sequence[str] = ()) -> None:
    """Delete the store's records (with shards, set-aside lines and claims), the cache and the named files."""
    clear_store(out / "results.jsonl")
    for name in files:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "cache", ignore_errors=True)


def sweep_into(cells: Sequence[Cell], out: str | Path, *, shard: str | None = None, fresh: bool = False,
               repair: bool = False, retry_failed: bool = False, progress: bool = True,
               on_record: Callable[[Record, bool], None] | None = None, log: Callable[[str], None] | None = None,
               clear: Sequence[str] = (), title: str = "sweep") -> Outcome:
    """Run the cells into OUT by the protocol in the module doc; `clear` names the report files `fresh` deletes
    and `log` (e.g. print to stderr) receives a line at the start ('TITLE: N cells, …') and one per reference."""
    out = Path(out)
    if fresh and shard:
        raise DiffsolveError("fresh=True (--fresh) with a shard would let one job delete the others' results; clear "
                             "OUT once before starting the job array (or run one job with --fresh first)")
    say = log or (lambda line: None)
    with distributed.ranked(shard) as rank:
        parted = rank.world > 1
        if fresh and rank.leader and out.exists():
            clear_folder(out, clear)
        distributed.barrier(rank)
        store = ResultStore(out / "results.jsonl", repair=repair, shard=rank.label if parted else None)
        say(f"{title}: {len(cells)} cells, results in {out}/results.jsonl"
            + (f" ({rank.label}: cells {rank.rank}, {rank.rank + rank.world}, …)" if parted else ""))
        inputs = Inputs(cache_dir=out / "cache", progress=progress)
        try:
            with sigterm_as_interrupt():
                run_sweep(cells, store, progress=progress, retry_failed=retry_failed, on_record=on_record,
                          inputs=inputs, rank=rank if parted else None)
        except KeyboardInterrupt as e:  # every finished cell is stored: report them, rerun to finish
            store.refresh()
            return Outcome(in_order(store, cells), rank, not parted, e, inputs.references)
        for ref in inputs.references:
            say(f"reference for {ref['problem']} (n={ref['n']}, seed {ref['seed']}, rtol {ref['ref_tol']:g}): "
                + (f"{ref['nfe']} NFE" if ref["nfe"] else "closed-form ODE")
                + f" in {ref['seconds']:.1f} s with its check, reference error {ref['ref_err']:.2e}")
        distributed.barrier(rank)
        complete = not parted or (rank.group and rank.leader)
        if parted and complete:  # every rank is done: fold the shards, then this process reports the suite
            store.merge_shards()
        return Outcome(in_order(store, cells if complete else distributed.deal(list(
            {c.key: c for c in cells}.values()), rank)), rank, complete, None, inputs.references)


def merge(out: str | Path, cells: Sequence[Cell] = (), *, repair: bool = False) -> list[Record]:
    """Fold the shards in OUT into OUT/results.jsonl (idempotent) and return every stored record: those of `cells`
    first, in their order (as a single run reports them), then the others in the store's order."""
    out = Path(out)
    if not (out / "results.jsonl").exists() and not shard_paths(out / "results.jsonl"):
        raise DiffsolveError(f"--merge {str(out)!r}: no results.jsonl or results.shard-*.jsonl there; give the "
                             f"--out folder of the sweep")
    store = ResultStore(out / "results.jsonl", repair=repair)
    store.merge_shards()
    missing = [c for c in {c.key: c for c in cells}.values() if c.key not in store]
    if missing:
        first = missing[0]
        warnings.warn(f"{len(missing)} of the sweep's {len({c.key for c in cells})} cells are not in {str(out)!r} "
                      f"(e.g. {first.problem} / {first.label or first.solver} / {first.grid} / nfe {first.nfe}): a "
                      f"shard has not finished, or the flags differ from the sweep's; run the missing shard "
                      f"(--shard i/n) or give --merge the sweep's own flags", stacklevel=2)
    return in_order(store, cells, rest=True)
