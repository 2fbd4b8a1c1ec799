"""Take a diffsolve sampler home: into diffusers pipelines, k-diffusion samplers, and loops that take sigmas.

- `DiffsolveScheduler` (needs diffusers): any one-call-per-step solver on any grid as a diffusers scheduler;
- `k_sampler(solver, **options)`: a function with k-diffusion's sampler signature;
- `sigmas(grid, target)`, `timesteps(grid, target)`: the plain lists diffusers' `sigmas=`/`timesteps=` and
  k-diffusion take; `write_exports(tuned_or_grid, path_stem, kinds)` writes them beside a grid file;
- `resolve(name)`: community sampler names ("DPM++ 2M Karras", "Euler a", …) → diffsolve configurations.
Each takes a learned solver too ('file:learned.json' or a LearnedSolver: its grid, evaluation times and end).
`import diffsolve.export` imports no diffusers; `DiffsolveScheduler` does, on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "DiffsolveScheduler": "scheduler",
    "k_sampler": "k_diffusion",
    "sigmas": "schedules",
    "timesteps": "schedules",
    "write_exports": "files",
    "resolve": "..presets",
    "NAMES": "..presets",
}


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first use (diffusers only for DiffsolveScheduler)."""
    if name not in _NAMES:
        raise AttributeError(f"module 'diffsolve.export' has no attribute {name!r}")
    module = _NAMES[name]
    value = getattr(importlib.import_module(module if module.startswith("..") else f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))


__all__ = list(_NAMES)
