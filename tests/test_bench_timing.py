"""diffsolve.bench.timing: interleaved medians call each run warm-up + repeats times, in rounds."""

import pytest

from diffsolve.bench.timing import interleaved_medians
from diffsolve.errors import DiffsolveError


def test_runs_are_interleaved_and_counted():
    calls: list[str] = []
    syncs: list[int] = []
    out = interleaved_medians([lambda: calls.append("a"), lambda: calls.append("b")], repeats=3,
                              sync=lambda: syncs.append(1), warmup=2)
    assert calls == ["a", "b"] * 5  # two warm-up rounds, then three timed rounds, a and b alternating
    assert len(syncs) == 2 * 2 * 3  # before the start and before the stop of every timed run
    assert len(out) == 2 and all(s >= 0.0 for s in out)


def test_wrong_repeats_raise():
    with pytest.raises(DiffsolveError, match="repeats"):
        interleaved_medians([lambda: None], repeats=0)
