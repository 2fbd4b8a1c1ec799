"""What tuning spends and where it stands: sample-evaluations per stage, progress bars, the estimate, the deadline.

A sample-evaluation is one network call on one draw (model calls × batch). Forward ones are counted from the model's
own call counter around each chunk; a backward pass counts one vector-Jacobian product per forward call it goes
through. Each stage (teacher, DP, starts, refinement, validation, held-out) has its own bar on stderr with the
sample-evaluations spent so far.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

from ..models import Model


class OutOfTime(Exception):
    """The deadline (max_seconds) has passed: stop at the best grid so far."""


SETUP = "setup"


class Ledger:
    """Per stage (this rank's): model calls, forward and backward sample-evaluations, wall and CPU seconds; the
    deadline; the bars. Stages named "NFE k: …" belong to one NFE, the others are shared."""

    def __init__(self, model: Model, progress: bool, max_seconds: float | None, label: str):
        self.model, self.progress, self.label = model, progress, label
        self.calls: dict[str, int] = {}
        self.forward: dict[str, int] = {}
        self.vjp: dict[str, int] = {}
        self.wall_s: dict[str, float] = {}
        self.cpu_s: dict[str, float] = {}
        self.stage = SETUP
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.mark = (self.wall, self.cpu)
        self.max_seconds = max_seconds
        self.deadline = None if max_seconds is None else self.wall + max_seconds
        self.bar: Any = None

    def run(self, batch: int, fn: Callable[[], Any]) -> Any:
        """fn() on a batch of `batch` draws, its model calls counted."""
        before = self.model.nfe
        out = fn()
        calls = self.model.nfe - before
        self.calls[self.stage] = self.calls.get(self.stage, 0) + calls
        self.forward[self.stage] = self.forward.get(self.stage, 0) + calls * batch
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.spent():,} sample-evals", refresh=False)
        return out

    def recomputed(self, calls: int, batch: int) -> None:
        """Count `calls` network calls on `batch` draws that the model's counter did not see (a checkpointed
        backward pass recomputes each call, but stops counting early)."""
        self.calls[self.stage] = self.calls.get(self.stage, 0) + calls
        self.forward[self.stage] = self.forward.get(self.stage, 0) + calls * batch

    def backward(self, calls: int, batch: int) -> None:
        """Count a backward pass through `calls` network calls on `batch` draws."""
        self.vjp[self.stage] = self.vjp.get(self.stage, 0) + calls * batch

    def spent(self) -> int:
        """Forward sample-evaluations so far (this rank)."""
        return sum(self.forward.values())

    @contextmanager
    def stage_bar(self, name: str, total: int, unit: str) -> Iterator[Any]:
        """A stage with its bar (total steps of `unit`): `bar.update()` as they finish."""
        self._clock()
        self.stage = name
        self.forward.setdefault(name, 0)  # every rank enters every stage: the same names on each, for the reduction
        self.bar = tqdm(total=total, desc=f"{self.label}: {name}", unit=unit, disable=not self.progress,
                        leave=False, dynamic_ncols=True, file=sys.stderr)
        try:
            yield self.bar
        finally:
            self.bar.close()
            self.bar = None
            self._clock()
            self.stage = SETUP

    def _clock(self) -> None:
        """Charge the seconds since the last mark to the current stage."""
        now = (time.perf_counter(), time.process_time())
        self.wall_s[self.stage] = self.wall_s.get(self.stage, 0.0) + now[0] - self.mark[0]
        self.cpu_s[self.stage] = self.cpu_s.get(self.stage, 0.0) + now[1] - self.mark[1]
        self.mark = now

    def totals(self, keep: Callable[[str], bool]) -> dict[str, Any]:
        """Calls, forward and backward sample-evaluations, wall and CPU seconds over the stages `keep` accepts."""
        self._clock()
        def over(d: dict[str, Any]) -> Any:
            return sum(v for k, v in d.items() if keep(k))
        return {"calls": over(self.calls), "forward": over(self.forward), "vjp": over(self.vjp),
                "wall": over(self.wall_s), "cpu": over(self.cpu_s),
                "by_stage": {k: v for k, v in self.forward.items() if keep(k)},
                "cpu_by_stage": {k: round(v, 3) for k, v in self.cpu_s.items() if keep(k)}}

    def tick(self) -> None:
        """One step of the current stage done; raise OutOfTime past the deadline."""
        if self.bar is not None:
            self.bar.update()
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise OutOfTime

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def say(self, text: str) -> None:
        """A line on stderr when progress is shown."""
        if self.progress:
            tqdm.write(f"{self.label}: {text}", file=sys.stderr)
