"""Wall-clock timing for the benchmark scripts: medians of interleaved repeats.

Interleaving (run 1, run 2, …, run 1, run 2, …) makes load from other processes hit every run alike,
so ratios between runs measured together are steadier than their absolute times.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

from ..errors import DiffsolveError


def interleaved_medians(
    runs: Sequence[Callable[[], object]], repeats: int, sync: Callable[[], None] | None = None, warmup: int = 1,
) -> list[float]:
    """Median wall seconds of each run over `repeats` interleaved rounds, after `warmup` untimed rounds.

    `sync` (e.g. torch.cuda.synchronize) is called before a run starts and before its clock stops.
    """
    if repeats < 1 or warmup < 0:
        raise DiffsolveError(f"repeats must be ≥ 1 and warmup ≥ 0, got repeats={repeats}, warmup={warmup}")
    wait = sync or (lambda: None)
    for _ in range(warmup):
        for run in runs:
            run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, bucket in zip(runs, times):
            wait()
            start = time.perf_counter()
            run()
            wait()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]
