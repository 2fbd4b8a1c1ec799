"""What the cells of one sweep share: problems, schedules, x_T, references, exact sample sets and the yardstick of
the user's data (diffsolve.bench.data).

References are the expensive part (for trained networks): with a `cache_dir` they are also kept on disk,
keyed by a hash of the problem's fingerprint, the schedule's config, the tolerance and the bytes of x_T, so
that a rerun that adds cells does not solve them again and a changed network does not reuse them; a damaged
cache file is solved again (with a one-line warning), never a failure of every cell. What a cell trains on its
own training draws (a `tuned` grid, a `learned` solver) is made once the same way by `trained`.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import problems as problems_mod
from ..errors import DiffsolveError, unknown_name
from ..locking import locked, unique_temp
from ..problems import Problem
from ..schedules import SCHEDULES, Schedule
from . import metrics
from .data import Yardstick, lookup, yardstick
from .suite import MODEL_SCHEDULE, Cell

DTYPE = {"float64": torch.float64, "float32": torch.float32}
STREAM_EXACT_A, STREAM_EXACT_B = 2, 3
REF_CHECK_FACTOR = 10.0  # the reference's own error: one re-solve at tolerances this many times tighter


class _Savable(Protocol):
    def save(self, path: Path) -> Any: ...


Saved = TypeVar("Saved", bound=_Savable)


class Inputs:
    """Per-sweep cache of what cells share; `memo(key, make)` builds an entry once per sweep.

    `progress` shows a bar while a reference is solved; `references` lists each reference solved here
    (problem, NFE, seconds, its own error).
    """

    def __init__(self, cache_dir: str | Path | None = None, progress: bool = False) -> None:
        self._cache: dict[tuple[Any, ...], Any] = {}
        self.reference_seconds = 0.0
        self.reference_nfe = 0
        self.references: list[dict[str, Any]] = []
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.progress = progress

    def memo(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """The entry under `key` (a tuple of values), built by make() on first use in this sweep."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def trained(self, kind: str, key: str, make: Callable[[], Saved], load: Callable[[Path], Saved]) -> Saved:
        """What `make` trains for a cell (a tuned grid, a learned solver: objects with .save(path)), keyed by `key` (a
        string of values): made once per sweep and, with a cache_dir, once across processes and reruns — kept in
        cache_dir/KIND-<hash of key>.json, made under a file lock (another process making it is waited for) and read
        back with load(path), which checks it."""
        if self.cache_dir is None:
            return self.memo((kind, key), make)
        path = self.cache_dir / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

        def read() -> Saved:
            path.parent.mkdir(parents=True, exist_ok=True)
            with locked(path.with_suffix(".lock")):
                if not path.exists():
                    tmp = unique_temp(path)  # a name no other process writes
                    make().save(tmp)
                    os.replace(tmp, path)  # atomic: a kill leaves no half-written file
            return load(path)
        return self.memo((kind, key), read)

    def problem(self, cell: Cell) -> Problem:
        return problems_mod.lookup(cell.problem, cell.fingerprint)

    def schedule(self, cell: Cell) -> Schedule:
        if cell.schedule == MODEL_SCHEDULE:
            return self.problem(cell).default_schedule()
        if cell.schedule not in SCHEDULES:
            raise DiffsolveError(unknown_name("schedule", cell.schedule, list(SCHEDULES)))
        return self.memo(("schedule", cell.schedule), SCHEDULES[cell.schedule])

    def x_T(self, cell: Cell) -> Tensor:
        """The cell's starting states (float64, VP coordinates), shared by every solver."""
        return self.memo(("x_T", cell.problem, cell.fingerprint, cell.schedule, cell.n, cell.seed),
                         lambda: self.problem(cell).x_T(cell.n, cell.seed, self.schedule(cell)))

    def _solve_reference(self, cell: Cell) -> tuple[Tensor, float]:
        """(reference at ref_tol, its RMSE to one re-solve REF_CHECK_FACTOR times tighter), with a progress bar
        over the λ range covered (the bar's postfix counts the network evaluations)."""
        prob, sched, x_T = self.problem(cell), self.schedule(cell), self.x_T(cell)
        tight = cell.ref_tol / REF_CHECK_FACTOR
        counter = _ReferenceProgress(sched, self.progress, f"reference {cell.problem} n={cell.n} at rtol "
                                                           f"{cell.ref_tol:g}")
        t0 = time.perf_counter()
        with counter:
            ref = _reference(cell, cell.ref_tol, lambda: prob.reference(x_T, sched, rtol=cell.ref_tol,
                                                                        atol=cell.ref_tol, on_eval=counter.on_eval))
            counter.restart(f"its error: re-solve at rtol {tight:g}")
            fine = _reference(cell, tight, lambda: prob.reference(x_T, sched, rtol=tight, atol=tight,
                                                                  on_eval=counter.on_eval))
        seconds = time.perf_counter() - t0
        self.reference_seconds += seconds
        self.reference_nfe += counter.nfe
        ref_err = metrics.rmse(ref, fine)
        self.references.append({"problem": cell.problem, "schedule": cell.schedule, "n": cell.n, "seed": cell.seed,
                                "ref_tol": cell.ref_tol, "nfe": counter.nfe, "seconds": seconds,
                                "ref_err": ref_err})
        return ref, ref_err

    def _reference_path(self, cell: Cell) -> Path:
        sched, x_T = self.schedule(cell), self.x_T(cell)
        h = hashlib.sha256(f"{cell.fingerprint}|{sched.fingerprint()}|{cell.ref_tol!r}|"
                           f"{REF_CHECK_FACTOR!r}".encode())
        h.update(x_T.detach().cpu().to(torch.float64).contiguous().numpy().tobytes())
        assert self.cache_dir is not None
        return self.cache_dir / f"reference-{h.hexdigest()[:32]}.pt"

    def _cached_reference(self, cell: Cell) -> tuple[Tensor, float]:
        """The reference from the cache folder, solved (once across processes) and stored when missing or damaged."""
        path = self._reference_path(cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path.with_suffix(".lock")):  # one being solved by another process is waited for, then read
            if path.exists():
                saved = _read_reference(path, self.x_T(cell).shape)
                if saved is not None:
                    return saved
            ref, ref_err = self._solve_reference(cell)
            tmp = unique_temp(path)  # a name no other process writes
            torch.save({"ref": ref, "ref_err": ref_err}, tmp)
            os.replace(tmp, path)  # atomic: a kill leaves no half-written reference
        return ref, ref_err

    def reference(self, cell: Cell) -> tuple[Tensor, float]:
        """(reference end state, its own accuracy: RMSE between tolerances ref_tol and ref_tol/REF_CHECK_FACTOR)."""
        make = (lambda: self._solve_reference(cell)) if self.cache_dir is None else (
            lambda: self._cached_reference(cell))
        return self.memo(("ref", cell.problem, cell.fingerprint, cell.schedule, cell.n, cell.seed, cell.ref_tol),
                         make)

    def exact_sets(self, cell: Cell) -> tuple[Tensor, Tensor, float] | None:
        """Two independent exact sample sets of p_{t_end} and their SW2 (the floor), or None."""
        prob = self.problem(cell)
        if not prob.has_exact_samples:
            return None

        def make() -> tuple[Tensor, Tensor, float]:
            sched = self.schedule(cell)
            a = prob.samples(cell.n, cell.seed, sched, sched.t_min, stream=STREAM_EXACT_A)
            b = prob.samples(cell.n, cell.seed, sched, sched.t_min, stream=STREAM_EXACT_B)
            return a, b, metrics.sliced_w2(a, b, cell.sw2_projections)
        return self.memo(("exact", cell.problem, cell.fingerprint, cell.schedule, cell.n, cell.seed,
                          cell.sw2_projections), make)

    def yardstick(self, cell: Cell) -> Yardstick | None:
        """The yardstick of the cell's data (reference half, bandwidth, floors at cell.n samples), or None."""
        if not cell.data:
            return None

        def make() -> Yardstick:
            feats = lookup(cell.features) if cell.features else None
            return yardstick(lookup(cell.data), cell.n, self.problem(cell).sample_shape, cell.sw2_projections,
                             feats)
        return self.memo(("data", cell.data, cell.features, cell.n, cell.sw2_projections,
                          self.problem(cell).sample_shape), make)

    def end_alpha(self, cell: Cell) -> float:
        """α at the cell's end time t_end (the schedule's t_min): x̄ = x/α there are data coordinates."""
        sched = self.schedule(cell)
        return float(sched.alpha(sched.t_min))


def _reference(cell: Cell, tol: float, solve: Callable[[], Tensor]) -> Tensor:
    """solve() (a reference solve at rtol = atol = tol); its step size falling to zero (torchdiffeq's "underflow in
    dt") is a DiffsolveError naming the reference solve, the likely cause and the fix."""
    try:
        return solve()
    except AssertionError as e:
        if "underflow in dt" not in str(e):
            raise
        raise DiffsolveError(
            f"the float64 reference solve of problem {cell.problem!r} (adaptive, rtol = atol = {tol:g}) failed: its "
            f"step size fell to 0 (torchdiffeq: {e}). Likely the network's outputs are huge or explode along the "
            f"path (a diffusion model's ε is of order 1), or the ODE is too stiff for this tolerance; check what the "
            f"model returns on x_T, or loosen the reference tolerance (--ref-tol, now {cell.ref_tol:g}, e.g. "
            f"{cell.ref_tol * 100:g})") from None


def _read_reference(path: Path, shape: torch.Size) -> tuple[Tensor, float] | None:
    """(ref, ref_err) from a cache file, or None (with a warning) when it is damaged or does not fit x_T."""
    try:
        saved = torch.load(path, weights_only=True)
        ref, ref_err = saved["ref"], float(saved["ref_err"])
        if not isinstance(ref, Tensor) or ref.shape != shape or not bool(torch.isfinite(ref).all()):
            got = f"{type(ref).__name__} {tuple(getattr(ref, 'shape', ()))}"
            raise ValueError(f"holds {got}, not a finite tensor of shape {tuple(shape)}")
    except Exception as e:  # noqa: BLE001 — any damage: solve it again
        warnings.warn(f"cached reference {path} is damaged ({type(e).__name__}: {str(e)[:80]}); solving it again",
                      stacklevel=3)
        return None
    return ref, ref_err


class _ReferenceProgress:
    """A progress bar over the λ range a reference solve has covered; counts the network evaluations.

    tqdm's rate and ETA are those of λ covered per second, which an adaptive solve makes uneven (it slows where
    the network is stiff), so the bar shows the elapsed time and the NFE instead of an ETA."""

    def __init__(self, schedule: Schedule, show: bool, description: str):
        self.lam0, self.lam1 = schedule.lambda_min, schedule.lambda_max
        self.nfe = 0
        self.bar = tqdm(total=1000, disable=not show, leave=False, dynamic_ncols=True, unit="‰", desc=description,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}")

    def __enter__(self) -> _ReferenceProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()

    def on_eval(self, p: Any) -> None:
        self.nfe += 1
        done = round(1000 * (p.lam - self.lam0) / (self.lam1 - self.lam0))
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
        if self.nfe % 20 == 0:
            self.bar.set_postfix_str(f"NFE {self.nfe}")

    def restart(self, description: str) -> None:
        self.bar.reset()
        self.bar.set_description_str(description)
