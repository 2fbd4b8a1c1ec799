"""Data-parallel sampling of one large cell: sample i depends on (seed, i) only, never on batch or world size.

Sample i has the per-sample seed u_i = seed + i: its x_T is `problem.x_T(1, u_i)` and, for a stochastic solver, its
noise is the per-sample noise of seed u_i (diffsolve.solvers.brownian.PerSampleNoise), so it is exactly
`ds.sample(model, x_T_i, …, seed=[u_i])` on its own. The n samples are cut into batches of `batch`; batch k goes to
rank k mod world; each batch is written as it finishes to OUT/batches/ (one file, written to a temporary name and
renamed, so a kill leaves no half file) and a rerun skips the batches already there. When every batch is there,
the leader (or, in a job array, whichever shard finishes last) writes OUT/samples.pt (all n in order).
OUT/manifest.json fixes what the folder holds; a rerun that asks for something else (another solver, n, batch
size…) is refused before any work. Everything that can be wrong with a job (its numbers, the device, the problem,
the solver and its options, the NFE budget, the grid, the model's first call on the problem's shape) is checked
(`SampleJob.check`, `prepare`) before the manifest is written, so a wrong input never claims the folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import distributed, problems
from .checks import Option, positive_int
from .devices import check_device
from .errors import DiffsolveError
from .locking import locked, unique_temp
from .plan import plan, solver_of
from .points import make_point
from .solve import sample
from .solvers.brownian import MAX_SAMPLE_SEED

DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class SampleJob:
    """One cell to sample: problem × solver (options) × grid × NFE, n samples from seed, cut into batches."""

    problem: str
    solver: str
    nfe: int
    n: int
    seed: int = 0
    batch: int = 256
    grid: str | None = None  # None: the plan's default (logsnr), or a community name's own grid
    dtype: str = "float32"
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"  # its type is part of the manifest: CPU and GPU samples differ by round-off
    shape: tuple[int, ...] | None = None  # one sample's shape, for a problem given as a bare Model

    def check(self) -> None:
        """The job's numbers, dtype and device (a device this machine does not have is refused)."""
        for name in ("nfe", "n", "batch"):
            positive_int(getattr(self, name), f"--{name}")
        Option("--seed", "int", 0, "sample i uses seed + i", low=0).check(self.seed)
        if self.seed + self.n > MAX_SAMPLE_SEED:
            raise DiffsolveError(f"--seed {self.seed!r} with --n {self.n}: sample i uses seed + i, which must stay in "
                                 f"[0, 2^30); give a seed in [0, {MAX_SAMPLE_SEED - self.n}]")
        Option("--dtype", "choice", "float32", choices=tuple(DTYPES)).check(self.dtype)
        check_device(self.device, "--device")

    def batches(self) -> list[tuple[int, int]]:
        """(first sample, end) of every batch, in order."""
        return [(s, min(s + self.batch, self.n)) for s in range(0, self.n, self.batch)]

    def manifest(self, fingerprint: str) -> dict[str, Any]:
        """What the folder holds: the job, its device type and the problem's fingerprint (not the world size), as
        JSON reads it back."""
        out = {**asdict(self), "fingerprint": fingerprint}
        out["device"] = torch.device(self.device).type
        return json.loads(json.dumps(out))

    def solver_options(self, seeds: list[int]) -> dict[str, Any]:
        """The solver's options; a stochastic solver's noise is per sample, from seeds."""
        options = dict(self.options)
        if solver_of(self.solver).integrates_for(**options).stochastic:
            options["seed"] = seeds
        return options


def sample_seeds(seed: int, start: int, end: int) -> list[int]:
    """The per-sample seeds u_i = seed + i of samples start … end − 1."""
    return list(range(seed + start, seed + end))


def x_T_rows(problem: problems.Problem, seeds: list[int], schedule: Any) -> Tensor:
    """Row r = problem.x_T(1, seeds[r]): each sample's start from its own seed (float64, VP coordinates)."""
    return torch.cat([problem.x_T(1, s, schedule) for s in seeds])


def batch_path(out: Path, start: int, end: int) -> Path:
    return out / "batches" / f"x-{start:09d}-{end:09d}.pt"


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary name, then rename: readers never see half a file."""
    tmp = unique_temp(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _check_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Write OUT/manifest.json, or refuse a folder that holds another job's samples."""
    path = out / "manifest.json"
    with locked(out / "manifest.lock"):
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as e:
                old = f"not JSON ({e})"
            why = _manifest_damage(old, manifest)
            if why:
                raise DiffsolveError(f"{path} is damaged ({why}); it records which job the folder's samples belong "
                                     f"to. Delete the folder to start again (or delete manifest.json alone if the "
                                     f"batches are this job's)")
            diff = {k: (old.get(k), v) for k, v in manifest.items() if old.get(k) != v}
            if diff:
                shown = ", ".join(f"{k}: {a!r} there, {b!r} asked" for k, (a, b) in diff.items())
                raise DiffsolveError(f"{out} holds samples of another job ({shown}); give another --out, or "
                                     f"delete the folder to start again")
            return
        tmp = unique_temp(path)
        tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def _manifest_damage(old: Any, manifest: dict[str, Any]) -> str:
    """Why `old` (a manifest as read) is no manifest at all: not a JSON object, a field missing, or a field of another
    JSON type than a job's (n: "four"); '' when it is one (perhaps another job's)."""
    if isinstance(old, str):
        return old
    if not isinstance(old, dict):
        return "not a JSON object"
    missing = [k for k, v in manifest.items() if k not in old and v is not None]  # absent reads as None (older files)
    if missing:
        return f"field(s) {', '.join(missing)} missing"
    wrong = [f"{k}: {old[k]!r}" for k, v in manifest.items()
             if None not in (old.get(k), v) and type(old[k]) is not type(v)]
    return f"field(s) of the wrong type ({', '.join(wrong)})" if wrong else ""


def _model(job: SampleJob, problem: problems.Problem) -> Any:
    """The problem's model on its own schedule, in the job's dtype, its network on the job's device."""
    model = problem.model(problem.default_schedule(), dtype=DTYPES[job.dtype])
    if isinstance(model.net, nn.Module):
        model.net.to(job.device)
    return model


def prepare(job: SampleJob) -> problems.Problem:
    """The job's problem, once everything that can be wrong is checked: the numbers and device, the problem, the
    solver and its options, the NFE budget and grid (the cell plan), and the model's first call."""
    job.check()
    problem = problems.resolve(job.problem, shape=job.shape)
    model, sched = _model(job, problem), problem.default_schedule()
    seeds = sample_seeds(job.seed, 0, min(2, job.n))
    plan(model, job.solver, nfe=job.nfe, grid=job.grid, options=job.options, fingerprint=problem.fingerprint())
    x_T = x_T_rows(problem, seeds, sched).to(device=job.device)
    problem.check_first_call(job.problem, sched, DTYPES[job.dtype], x_T, model)
    return problem


def sample_batch(job: SampleJob, problem: problems.Problem, start: int, end: int) -> tuple[Tensor, int]:
    """Samples start … end − 1 (in the model's coordinates and dtype) and the NFE counted."""
    sched, model = problem.default_schedule(), _model(job, problem)
    seeds = sample_seeds(job.seed, start, end)
    x_T = x_T_rows(problem, seeds, sched).to(device=job.device, dtype=DTYPES[job.dtype])
    x_user = model.from_vp(x_T, make_point(sched, sched.t_max))
    sol = sample(model, x_user, solver=job.solver, nfe=job.nfe, grid=job.grid, **job.solver_options(seeds))
    return sol.x.cpu(), sol.nfe


def run(job: SampleJob, out: str | Path, rank: distributed.Rank, *, progress: bool = True,
        problem: problems.Problem | None = None) -> Path | None:
    """Sample this rank's batches into OUT/batches (skipping those there); the leader then writes OUT/samples.pt.

    Returns the path of samples.pt once every batch is there, else None. `problem`: the job's, from `prepare(job)`
    (prepared here when not given).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DiffsolveError(f"--out {str(out)!r} is a file; give a folder for the samples (created if missing)")
    problem = problem or prepare(job)  # before the manifest: a wrong input must not claim the folder
    (out / "batches").mkdir(parents=True, exist_ok=True)
    _check_manifest(out, job.manifest(problem.fingerprint()))
    mine = [b for b in distributed.deal(job.batches(), rank) if not batch_path(out, *b).exists()]
    for start, end in tqdm(mine, disable=not progress, unit="batch", desc=f"sample {rank.label}"):
        x, nfe = sample_batch(job, problem, start, end)
        save_atomic({"x": x, "first": start, "seeds": sample_seeds(job.seed, start, end), "nfe": nfe},
                    batch_path(out, start, end))
    distributed.barrier(rank)
    # under torchrun the leader merges after the barrier; shards of a job array cannot wait for each other, so
    # each tries (merging is idempotent and atomic): the last to finish writes samples.pt
    return merge(job, out, problem) if rank.leader or not rank.group else None


def merge(job: SampleJob, out: Path, problem: problems.Problem) -> Path | None:
    """OUT/samples.pt (x: all n samples in order, seeds) once every batch file is there; else None. Each batch file
    is checked (read_batch) to hold what this job's sample_batch writes."""
    paths = [batch_path(out, *b) for b in job.batches()]
    if not all(p.exists() for p in paths):
        return None
    row = tuple(x_T_rows(problem, [job.seed], problem.default_schedule()).shape[1:])  # one sample, as sampled
    parts = [read_batch(p, *b, row=row, dtype=DTYPES[job.dtype]) for p, b in zip(paths, job.batches())]
    target = out / "samples.pt"
    save_atomic({"x": torch.cat([p["x"] for p in parts]), "seeds": sample_seeds(job.seed, 0, job.n),
                 "nfe_per_sample_batch": parts[0]["nfe"]}, target)
    return target


def read_batch(path: Path, start: int, end: int, *, row: tuple[int, ...], dtype: torch.dtype) -> dict[str, Any]:
    """A batch file's {"x", "first", "seeds", "nfe"}, checked to hold samples start … end − 1: x of shape
    (end − start, *row) and `dtype`, every value finite (sampling never stores NaN or Inf). A file that cannot be
    read or holds something else is a damaged folder: a DiffsolveError naming the file, what is wrong and the fix."""
    try:
        part = torch.load(path, weights_only=True)
        why = "" if isinstance(part, dict) else f"it holds a {type(part).__name__}"
    except Exception as e:  # noqa: BLE001 — any file torch cannot read is the same damage
        part, why = None, f"torch.load cannot read it: {type(e).__name__}"
    if not why:
        x = part.get("x")
        if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[0] != end - start or part.get("first") != start \
                or not isinstance(part.get("nfe"), int):
            why = f"it does not hold samples {start} … {end - 1} (x, first, nfe)"
        elif tuple(x.shape) != (end - start, *row) or x.dtype != dtype:
            why = (f"its x is a {x.dtype} tensor of shape {tuple(x.shape)}, not {dtype} of shape "
                   f"{(end - start, *row)}")
        elif not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            why = f"its x holds {bad} NaN or Inf value{'s' * (bad > 1)}; sampling stores finite values only"
    if why:
        raise DiffsolveError(f"{path} is damaged ({why}); it holds samples {start} … {end - 1} of the folder's job. "
                             f"Delete that file (a rerun samples it again), or delete the folder to start again")
    return part
