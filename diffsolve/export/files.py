"""Write a (tuned) grid where other libraries read it: `write_exports(tuned, "out/g", ["diffusers", "sigmas"])`.

- "sigmas":      STEM.sigmas.json — {"sigmas": [...]}: the noise levels, descending (with a final 0 when the grid's
                 solver ends at σ = 0), for diffusers' `sigmas=` (drop the 0) or any loop that takes sigmas;
- "k-diffusion": STEM.k-diffusion.json — {"sigmas": [..., 0?], "sampler": "k_sampler(...)"}: the list and the
                 k-diffusion sampler that runs the grid's solver on it;
- "diffusers":   STEM.diffusers/scheduler_config.json — a DiffsolveScheduler (solver, options, the grid's times and
                 evaluation times, its schedule): DiffsolveScheduler.from_pretrained(dir, prediction_type=…).
A grid with decoupled evaluation times has no plain list ("sigmas", "k-diffusion" refuse it); "diffusers" keeps them.
A learned solver ('file:learned.json', a LearnedSolver) exports its own grid and end: "diffusers" carries its weights
in the scheduler's config, "k-diffusion" names `k_sampler('file:STEM.json')`, which evaluates the network at its
evaluation times (so that kind takes decoupled ones too; STEM.json is written when it does not exist).
`diffsolve tune … --export KIND` (and `--learn`) calls this beside the grid (or learned solver's) file.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from .. import grids as grids_mod
from .. import schedules
from ..errors import GridError
from ..grids import Grid
from ..solvers.learned import LearnedSolver, learned_of
from .k_diffusion import learned_grid
from .schedules import sigmas

KINDS = ("diffusers", "k-diffusion", "sigmas")


def _grid_file(spec: Any) -> tuple[Grid, dict[str, Any]] | None:
    """(the grid, the file's fields) of a 'file:PATH' spec naming a grid file (a tuned grid's or a plain one), on the
    file's own schedule; None for anything else (a learned solver's file included)."""
    if not (isinstance(spec, str) and spec.startswith("file:")):
        return None
    data = grids_mod.read_file(spec[len("file:"):])
    if data.get("kind") == "learned" or not isinstance(data.get("schedule"), dict):
        return None
    return grids_mod.load_file(spec[len("file:"):], schedules.from_config(data["schedule"])), data


def _parts(tuned_or_grid: Any) -> tuple[Grid, str | None, dict[str, Any], LearnedSolver | None]:
    """(grid, solver, options, learned solver or None) of a TunedGrid, a learned solver (its name, its options), a
    grid file ('file:PATH': its solver and options where it records them) or a plain Grid (no solver)."""
    from_file = _grid_file(tuned_or_grid)
    if from_file is not None:
        grid, data = from_file
        return grid, data.get("solver"), dict(data.get("options") or {}), None
    learned = learned_of(tuned_or_grid)
    if learned is not None:
        return learned.grid, learned.solver.name, dict(learned.solver.learned_options), learned
    if isinstance(tuned_or_grid, Grid):
        return tuned_or_grid, None, {}, None
    grid = getattr(tuned_or_grid, "grid", None)
    if not isinstance(grid, Grid):
        raise GridError(f"write_exports takes a diffsolve Grid, a TunedGrid (diffsolve.grids.tune), a learned solver "
                        f"or a 'file:PATH' grid or learned-solver file, got {type(tuned_or_grid).__name__}")
    return grid, tuned_or_grid.solver, dict(tuned_or_grid.options or {}), None


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def check_kinds(kinds: list[str], decoupled: bool, learned: bool = False) -> list[str]:
    """Export kinds checked before the work that makes the grid: known, diffusers importable for its kind, and a
    list of sigmas (which cannot carry decoupled evaluation times) only for a grid made without them (a learned
    solver's k-diffusion sampler carries them)."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise GridError(f"unknown export kind(s) {', '.join(unknown)}; give some of {', '.join(KINDS)}")
    if "diffusers" in kinds and importlib.util.find_spec("diffusers") is None:
        raise GridError("the diffusers export needs diffusers: pip install diffusers (or drop that kind)")
    lists = [k for k in kinds if k != "diffusers" and not (learned and k == "k-diffusion")]
    if lists and decoupled:
        raise GridError(f"export {', '.join(lists)}: a list of sigmas cannot carry the decoupled evaluation times a "
                        f"tuned grid may have; tune without them (--no-eval-times, eval_times=False), or export "
                        f"diffusers alone (its scheduler carries them)"
                        + (" or k-diffusion (a learned solver's sampler carries them)" if learned else ""))
    return list(kinds)


def write_exports(tuned_or_grid: Any, path_stem: str | Path, kinds: list[str] | tuple[str, ...]) -> list[Path]:
    """Write each kind of export of the grid (a TunedGrid's, a Grid, a grid file's 'file:PATH', or a learned solver's:
    'file:PATH' or a LearnedSolver) beside `path_stem` (e.g. "out/g" for out/g.json); returns the paths."""
    grid, solver, options, learned = _parts(tuned_or_grid)
    check_kinds(list(kinds), grid.decoupled, learned is not None)
    stem = Path(path_stem)
    end = "zero" if options.get("to_zero") else "sigma_min"
    written = []
    for kind in kinds:
        if kind == "diffusers":
            written.append(_write_scheduler(tuned_or_grid if learned is not None else None, grid, solver, options,
                                            stem.parent / f"{stem.name}.diffusers"))
            continue
        data: dict[str, Any] = {"end": end, "schedule": grid.schedule.to_config()}
        if kind == "k-diffusion" and learned is not None:  # its nodes; the sampler evaluates at its own times
            data["sigmas"] = learned_grid(learned)[0].tolist()
            data["sampler"] = f"diffsolve.export.k_sampler({_learned_file(tuned_or_grid, learned, stem, written)!r})"
        else:
            data["sigmas"] = sigmas(grid, end=end).tolist()
        if kind == "k-diffusion" and learned is None:
            extra = "".join(f", {k}={v!r}" for k, v in options.items() if k != "to_zero")
            data["sampler"] = f"diffsolve.export.k_sampler({(solver or 'dpmpp2m')!r}{extra})"
        written.append(_write_json(stem.parent / f"{stem.name}.{kind}.json", data))
    return written


def _write_scheduler(learned: Any, grid: Grid, solver: str | None, options: dict[str, Any], target: Path) -> Path:
    """A DiffsolveScheduler config folder: the learned solver's, or the solver's on the grid's times."""
    from .scheduler import DiffsolveScheduler  # needs diffusers

    if learned is not None:
        scheduler = DiffsolveScheduler(solver=learned, schedule=grid.schedule.to_config())
    else:
        scheduler = DiffsolveScheduler(
            solver=solver, options=options, grid=grid.name, grid_times=grid.t.tolist(),
            grid_eval_times=None if grid.t_eval is None else grid.t_eval.tolist(),
            grid_schedule=grid.schedule.to_config(), schedule=grid.schedule.to_config())
    scheduler.save_pretrained(target)
    return target / "scheduler_config.json"


def _learned_file(given: Any, learned: LearnedSolver, stem: Path, written: list[Path]) -> str:
    """The 'file:PATH' spec a k-diffusion export names: the one given, else STEM.json (written when absent)."""
    if isinstance(given, str):
        return given
    path = stem.parent / f"{stem.name}.json"
    if not path.exists():
        written.append(learned.save(path))
    return f"file:{path}"
