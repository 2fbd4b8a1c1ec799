"""The step grids of diffusers' and k-diffusion's default samplers, as diffsolve Grids (with evaluation times).

On a DDPM table (DiscreteDDPM: t_n = (n+1)/N, the network called at N·t − 1 = n), for `calls` network calls:
- "multistep" family (DPMSolverMultistep, UniPC, DEIS), spacing "linspace": integer timesteps
  n_k = round(linspace(0, N − 1, calls + 1))[::-1][:-1], noise levels the table's σ̄ at them;
- "k" family (Euler, Euler a, LMS: k-diffusion's samplers ported), spacing "linspace": n_k = linspace(0, N − 1,
  calls)[::-1] (fractional), σ̄ interpolated linearly in n between the table's values;
- spacing "leading" (DDIM): n_k = (calls − 1 − k)·⌊N/calls⌋;
- karras: σ̄_k uniform in σ̄^{1/7} from the table's σ̄_max to σ̄_min, the network called at diffusers' step of σ̄_k
  (log σ̄ interpolated linearly in n), rounded to an integer by the multistep family.
A node's step time is t(σ̄_k); where the network is called elsewhere (fractional or rounded steps), the grid
carries that as its decoupled evaluation time t′ = (n_k + 1)/N — exactly what those schedulers do.
On a continuous schedule only karras applies (k-diffusion's get_sigmas_karras between the schedule's ends).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import GridError
from .grids import Grid
from .schedules import F64, DiscreteDDPM, Schedule

FAMILIES = ("multistep", "k")
SPACINGS = ("linspace", "leading", "karras")
KARRAS_RHO = 7.0
SAME_TIME = 1e-12  # evaluation times this close to the step times are the step times


def table_sigma_bar(schedule: DiscreteDDPM) -> Tensor:
    """σ̄_n = √((1 − ᾱ_n)/ᾱ_n) of the table, n = 0…N−1 (float64)."""
    acp = schedule.alphas_cumprod
    return torch.sqrt((1.0 - acp) / acp)


def step_of_sigma_bar(schedule: DiscreteDDPM, sigma_bar: Tensor) -> Tensor:
    """diffusers' `_sigma_to_t`: the fractional training step of σ̄, log σ̄ interpolated linearly in n."""
    log_table = torch.log(table_sigma_bar(schedule))
    log_s = torch.log(sigma_bar.clamp(min=1e-10))
    low = ((log_s[None, :] - log_table[:, None]) >= 0).to(torch.int64).cumsum(0).argmax(0)
    low = low.clamp(max=log_table.numel() - 2)
    lo, hi = log_table[low], log_table[low + 1]
    w = ((lo - log_s) / (lo - hi)).clamp(0.0, 1.0)
    return (1.0 - w) * low + w * (low + 1)


def karras_levels(s_max: float, s_min: float, count: int, rho: float = KARRAS_RHO) -> Tensor:
    """k-diffusion's get_sigmas_karras without the final 0: `count` levels uniform in σ̄^{1/ρ} (float64)."""
    ramp = torch.linspace(0.0, 1.0, count, dtype=F64)
    return (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho


def _discrete_nodes(schedule: DiscreteDDPM, calls: int, spacing: str, family: str) -> tuple[Tensor, Tensor]:
    """(σ̄ of the nodes, the network's training steps there) of diffusers' spacing for `calls` calls."""
    n_train = schedule.num_train_steps
    table = table_sigma_bar(schedule)
    if spacing == "karras":
        levels = karras_levels(float(table[-1]), float(table[0]), calls)
        steps = step_of_sigma_bar(schedule, levels)
        return levels, steps.round() if family == "multistep" else steps
    if spacing == "leading":
        steps = torch.arange(calls - 1, -1, -1, dtype=F64) * (n_train // calls)
    elif family == "multistep":
        steps = torch.linspace(0, n_train - 1, calls + 1, dtype=F64).round().flip(0)[:-1]
    else:
        steps = torch.linspace(0, n_train - 1, calls, dtype=torch.float32).to(F64).flip(0)
    low = steps.floor().clamp(max=n_train - 2).to(torch.int64)
    frac = steps - low
    return table[low] * (1.0 - frac) + table[low + 1] * frac, steps


def peer_grid(schedule: Schedule, calls: int, *, spacing: str, family: str = "multistep", to_zero: bool = True,
              name: str = "") -> Grid:
    """The grid of a peer's sampler making `calls` network calls: `calls` nodes, then σ = 0 (to_zero) or, without
    it, one more node at the schedule's t_min (diffusers' final_sigmas_type="sigma_min")."""
    if spacing not in SPACINGS or family not in FAMILIES:
        raise GridError(f"unknown peer spacing {spacing!r} / family {family!r}; valid: {SPACINGS} / {FAMILIES}")
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise GridError(f"a peer grid needs a positive integer number of network calls, got {calls!r}")
    if isinstance(schedule, DiscreteDDPM):
        levels, steps = _discrete_nodes(schedule, calls, spacing, family)
        t, t_eval = schedule.t_from_sigma_bar(levels), schedule.t_from_step(steps)
        t = torch.where((t - t_eval).abs() <= SAME_TIME, t_eval, t)  # a table's own node: its exact knot time
    elif spacing == "karras":
        ends = schedule.sigma_bar(torch.tensor([schedule.t_max, schedule.t_min], dtype=F64))
        t = schedule.t_from_sigma_bar(karras_levels(float(ends[0]), float(ends[1]), calls))
        t[0], t[-1] = schedule.t_max, schedule.t_min
        t_eval = t
    else:
        raise GridError(f"{spacing!r} timestep spacing is diffusers' spacing of a DDPM table (DiscreteDDPM), not of "
                        f"{schedule!r}; use a Karras variant of the name (e.g. 'Euler' → 'Euler Karras'), or the "
                        f"name's solver with a grid of your own")
    if not to_zero:
        t, t_eval = (torch.cat([v, torch.tensor([schedule.t_min], dtype=F64)]) for v in (t, t_eval))
    decoupled = not bool(((t_eval - t).abs() <= SAME_TIME * t.abs().clamp(min=1.0)).all())
    if len(t) < 2:
        raise GridError(f"{calls} network call(s) ending at σ = 0 leave no grid step; use at least 2")
    return Grid(schedule, t, name or f"{family}-{spacing}", t_eval if decoupled else None)


@dataclass(frozen=True)
class GridRecipe:
    """How a peer sampler spaces its steps: spacing and family (see the module docstring)."""

    spacing: str
    family: str = "multistep"

    def build(self, schedule: Schedule, calls: int, to_zero: bool, name: str) -> Grid:
        return peer_grid(schedule, calls, spacing=self.spacing, family=self.family, to_zero=to_zero, name=name)

    def describe(self) -> str:
        if self.spacing == "karras":
            rounding = "rounded" if self.family == "multistep" else "fractional"
            return f"Karras σ̄ (ρ = {KARRAS_RHO:g}), network at diffusers' {rounding} step"
        if self.spacing == "leading":
            return "'leading' steps (N // calls apart)"
        return "'linspace' integer steps" if self.family == "multistep" else "'linspace' fractional steps, σ̄ linear"
