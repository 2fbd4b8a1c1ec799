"""A grid as the plain lists other loops take: noise levels (k-diffusion's and diffusers' `sigmas=`) and the
network's timesteps (diffusers' `timesteps=`), and the maps between them and diffsolve's times t.

Noise levels: σ̄ = σ/α (k-diffusion, diffusers' DDPM-family `sigmas`) on every schedule but a rectified flow,
where diffusers' FlowMatch schedulers take the flow's own σ (x = (1 − σ) x0 + σ ε). The network's time is what
a diffsolve Model feeds it: schedule.model_time(t)·time_scale (N·t − 1 on a DiscreteDDPM table, N·σ on a Flow
from diffusers), so a list of timesteps is the very input `diffsolve.interop.from_diffusers` gives the network.
A grid with decoupled evaluation times cannot be written as one list: the error names what can run it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import GridError, ModelError
from ..grids import Grid
from ..models import Model
from ..schedules import F64, DiscreteDDPM, Flow, Schedule, as_f64
from ..solvers.learned import learned_of

ENDS = ("zero", "sigma_min")  # a list ends with 0 (diffusers' final_sigmas_type="zero", k-diffusion) or at σ_min


def noise_levels(schedule: Schedule, t: Tensor) -> Tensor:
    """The noise levels other libraries list at times t: the flow's σ on a Flow, σ̄ = σ/α elsewhere (float64)."""
    return schedule.sigma(t) if isinstance(schedule, Flow) else schedule.sigma_bar(t)


def times_from_noise_levels(schedule: Schedule, levels: Tensor | list[float]) -> Tensor:
    """t at positive noise levels (inverse of `noise_levels`); a flow's σ must lie in (0, 1)."""
    s = as_f64(levels).detach().cpu().reshape(-1)
    if not bool((s > 0).all()):
        raise GridError(f"noise levels must be positive, got {s.tolist()}; a final 0 (the end at σ = 0) goes last")
    if isinstance(schedule, Flow):
        if not bool((s < 1).all()):
            raise GridError(
                f"a flow's σ must be < 1, got {s.max().item():.6g}: σ = 1 (pure noise) lies outside diffsolve's Flow "
                f"schedule, which starts at σ(t_max) = {float(schedule.sigma(schedule.t_max)):.6g}; drop the first "
                f"σ = 1 (start one step later, at σ < 1)"
            )
        return schedule.t_from_sigma_bar(s / (1.0 - s))
    return schedule.t_from_sigma_bar(s)


def network_times(model: Model, t: Tensor) -> Tensor:
    """The network's time input at times t, as the Model feeds it: schedule.model_time(t)·time_scale (float64)."""
    if model.time_input_fn is not None:
        raise ModelError("this model maps times to its network's input with its own time_input function, which "
                         "has no inverse here; export noise levels (diffsolve.export.sigmas) instead")
    return model.schedule.model_time(as_f64(t)) * model.time_scale


def times_from_network(schedule: Schedule, values: Tensor | list[float], time_scale: float = 1.0) -> Tensor:
    """t at network time inputs (inverse of `network_times`): (n + 1)/N on a DiscreteDDPM, t(σ = n/scale) on a
    Flow, n/scale on schedules whose model time is t itself."""
    v = as_f64(values).detach().cpu().reshape(-1) / time_scale
    if isinstance(schedule, DiscreteDDPM):
        return schedule.t_from_step(v)
    if isinstance(schedule, Flow):
        return times_from_noise_levels(schedule, v)
    return v


def schedule_of(target: Any) -> Schedule:
    """The diffsolve schedule of a target: a Schedule, a diffsolve Model, or a diffusers scheduler / its config."""
    if isinstance(target, Schedule):
        return target
    if isinstance(target, Model):
        return target.schedule
    from .. import interop  # the diffusers route (interop itself imports no diffusers)

    schedule = getattr(target, "schedule", None)  # a DiffsolveScheduler after set_timesteps
    if isinstance(schedule, Schedule):
        return schedule
    if interop.is_flow_scheduler(target):
        return interop.flow_schedule_from_diffusers(target)
    return interop.schedule_from_diffusers(target)


def checked_grid(grid: Any, target: Any | None, what: str) -> Grid:
    """The grid (a learned solver's own: 'file:PATH' or a LearnedSolver, checked against the target's schedule and,
    for a Model, its network), refused when it lies on another schedule than the target's or has decoupled
    evaluation times."""
    learned = learned_of(grid, None if target is None else schedule_of(target),
                         target.net if isinstance(target, Model) else None)
    if learned is not None:
        grid = learned.grid
    if not isinstance(grid, Grid):
        raise GridError(f"{what} exports a diffsolve Grid (grids.build(spec, schedule, steps), TunedGrid.grid) or a "
                        f"learned solver ('file:learned.json', a LearnedSolver), got {type(grid).__name__}")
    if target is not None:
        schedule = schedule_of(target)
        if schedule != grid.schedule:
            raise GridError(f"the grid lies on {grid.schedule!r} but the target uses {schedule!r}; build (or tune) "
                            f"the grid on the target's schedule (diffsolve.interop.from_diffusers gives it)")
    if grid.decoupled:
        run = ("k_sampler(solver) on its own sigmas (k_sampler(solver).sigmas) in k-diffusion, "
               "DiffsolveScheduler(solver=…) in diffusers" if learned is not None else
               "diffsolve.export.DiffsolveScheduler (grid='file:…') in diffusers")
        raise GridError(
            f"grid {grid.name!r} evaluates the network at decoupled times (a tuned grid's eval_times), which one list "
            f"of {what} cannot express; run it with {run}, or ds.sample; or tune without them (eval_times=False)"
        )
    if not grid.decreasing:
        raise GridError(f"grid {grid.name!r} runs from noise to data in reverse (increasing t); export a sampling "
                        f"grid (noise → data)")
    return grid


def own_end(grid: Any, end: str | None) -> str:
    """Where a list ends: `end`, else a learned solver's own end, else "zero"; a learned solver's is the only one
    it takes."""
    learned = learned_of(grid)
    if learned is not None and end not in (None, learned.end):
        raise GridError(f"this learned solver ends at {learned.end!r} (its weights hold for that end alone), not "
                        f"end={end!r}; leave end out")
    if end is None:
        end = learned.end if learned is not None else "zero"
    if end not in ENDS:
        raise GridError(f"end must be one of {', '.join(map(repr, ENDS))}, got {end!r}")
    return end


def sigmas(grid: Any, schedule_or_scheduler: Any | None = None, *, end: str | None = None) -> Tensor:
    """The grid's noise levels, descending (float64): σ̄ (k-diffusion, diffusers' DDPM-family `sigmas=`) or a
    flow's σ (FlowMatch `sigmas=`). end="zero" (the default) appends 0 (k-diffusion's lists; the last step returns
    x̂0), "sigma_min" stops at the grid's last time. diffusers' `sigmas=` wants the list without the final 0.
    `grid` may be a learned solver ('file:learned.json', a LearnedSolver): its grid, ending where it ends."""
    end = own_end(grid, end)
    g = checked_grid(grid, schedule_or_scheduler, "sigmas")
    levels = noise_levels(g.schedule, g.t)
    return torch.cat([levels, torch.zeros(1, dtype=F64)]) if end == "zero" else levels


def timesteps(grid: Any, model_or_scheduler: Any) -> Tensor:
    """The network's timesteps at the grid's times, descending (float64), as diffusers' `timesteps=` takes them:
    N·t − 1 on a DDPM table (fractional between training steps: DDPM-family schedulers round them to integers),
    N·σ on a FlowMatch schedule. The list has one entry per node; the step after the last is the scheduler's.
    `grid` may be a learned solver ('file:learned.json', a LearnedSolver; refused for another model's network)."""
    g = checked_grid(grid, model_or_scheduler, "timesteps")
    if isinstance(model_or_scheduler, Model):
        return network_times(model_or_scheduler, g.t)
    schedule = schedule_of(model_or_scheduler)
    scale = 1.0
    if isinstance(schedule, Flow):
        config = getattr(model_or_scheduler, "config", model_or_scheduler)
        scale = float(config.get("num_train_timesteps", 1000))
    return schedule.model_time(g.t) * scale
