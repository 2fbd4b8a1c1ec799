"""diffsolve's samplers with k-diffusion's signature: `k_sampler("ipndm")(model, x, sigmas, extra_args, callback,
disable)`, usable wherever k-diffusion samplers plug in.

k-diffusion's convention: x̄ = x/α, noise levels σ̄, a denoiser D(x̄, σ̄) = x̂0. On the EDM schedule (t = σ̄, α =
1/√(1 + σ̄²)) that denoiser is a diffsolve X0Model with coords="ve", so the sampler is `ds.solve` of the solver on
the grid t = σ̄_i of the given sigmas — the same compiled plan (export/program.py), stepped here so that the
callback sees every step. `sigmas` descend and end with 0 (then the last step returns x̂0, to_zero) or at σ_min.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import trange

from ..errors import GridError, ModelError, SolverError
from ..grids import Grid, custom, times_tensor
from ..models import X0Model, check_state
from ..schedules import EDM, F64
from ..solvers.exp.base import Carry
from ..solvers.learned import LearnedSolver, learned_of
from .program import Program, resolve_solver

Sampler = Callable[..., Tensor]
SIGMA_RTOL = 1e-6  # a learned solver's sigmas given back (float32 lists included) match its own this closely


def sigma_grid_schedule(levels: list[float]) -> EDM:
    """The EDM schedule spanning the positive noise levels (a single level gets a range around it)."""
    low, high = min(levels), max(levels)
    return EDM(sigma_min=low, sigma_max=high if high > low else 2.0 * low)


def checked_sigmas(sigmas: Any) -> tuple[list[float], bool]:
    """(the positive levels, whether the list ends with 0), refused unless strictly descending and positive."""
    values = times_tensor(sigmas, "sigmas").tolist()
    if len(values) < 2:
        raise GridError(f"sigmas needs at least two noise levels (one step), got {values}")
    if any(b >= a for a, b in zip(values[:-1], values[1:])):
        raise GridError(f"sigmas must be strictly descending (noise → data), got {values}; pass them from the "
                        f"noisiest to the cleanest (e.g. sigmas.flip(0)), ending with 0 or σ_min")
    to_zero = values[-1] == 0.0
    levels = values[:-1] if to_zero else values
    if not levels or levels[-1] <= 0.0:
        raise GridError(f"sigmas must be positive, but for a final 0, got {values}")
    return levels, to_zero


def learned_grid(learned: LearnedSolver) -> tuple[Tensor, Grid]:
    """(the sigmas a learned solver runs on in k-diffusion: σ̄ at its nodes, and 0 when it ends there; its grid on the
    EDM schedule t = σ̄, with its evaluation times as σ̄ too). x̄ and σ̄ are the same on either schedule, so the plan
    is the one it runs on its own (λ = −log σ̄; iPNDM steps in σ̄)."""
    own = learned.grid
    nodes = own.schedule.sigma_bar(own.t)
    evals = None if own.t_eval is None else own.schedule.sigma_bar(own.t_eval)
    schedule = sigma_grid_schedule(nodes.tolist() + ([] if evals is None else evals.tolist()))
    listed = torch.cat([nodes, torch.zeros(1, dtype=F64)]) if learned.end == "zero" else nodes
    return listed, Grid(schedule, nodes, "learned", evals)


def checked_learned_sigmas(learned: LearnedSolver, sigmas: Any) -> Grid:
    """The learned solver's grid for k-diffusion (`learned_grid`), refused unless `sigmas` are its own."""
    listed, grid = learned_grid(learned)
    given = times_tensor(sigmas, "sigmas")
    if given.shape != listed.shape or not torch.allclose(given, listed, rtol=SIGMA_RTOL, atol=0.0):
        raise GridError(f"this learned solver runs on its own sigmas {[round(v, 6) for v in listed.tolist()]} (its "
                        f"grid: its weights hold there alone), got {given.tolist()}; pass k_sampler(…).sigmas")
    return grid


def _noise(draw: Callable[[Any, Any], Tensor], sigma: Any, sigma_next: Any, x: Tensor) -> Tensor:
    """noise_sampler(σ_i, σ_{i+1}), refused unless a tensor of x's shape (checked on the host: no sync)."""
    z = draw(sigma, sigma_next)
    if not isinstance(z, Tensor) or z.shape != x.shape:
        got = f"shape {tuple(z.shape)}" if isinstance(z, Tensor) else type(z).__name__
        raise ModelError(f"noise_sampler(sigma, sigma_next) returned {got}, but the noise must be a tensor of the "
                         f"state's shape {tuple(x.shape)}; return e.g. torch.randn_like(x)")
    return z


def k_sampler(solver: str | LearnedSolver, **options: Any) -> Sampler:
    """A k-diffusion sampler running diffsolve's `solver` (with `options`): sample(model, x, sigmas, extra_args=None,
    callback=None, disable=None, noise_sampler=None) → x̂ at the last sigma (x̂0 when the sigmas end with 0).

    Stochastic solvers (ddim eta > 0, ddpm, sde_dpmpp2m/3m) draw z_i = noise_sampler(σ_i, σ_{i+1}) (default
    torch.randn_like(x), as k-diffusion's ancestral samplers). A learned solver ('file:learned.json' or a
    LearnedSolver) runs on its own grid: pass the sampler's `.sigmas` (its nodes' σ̄, with 0 when it ends there);
    the network sees its evaluation times, and its options are its own (threshold= may be added)."""
    learned = learned_of(solver)
    learned_options = {} if learned is None else {**learned.solver.learned_options, **options}
    # unsupported solvers and options fail here
    resolve_solver(solver if learned is None else learned.solver, learned_options or options, "a k-diffusion sampler")
    if "to_zero" in options:
        raise SolverError("k_sampler: the sigmas decide the end (a final 0 steps to σ = 0); drop to_zero=")

    @torch.no_grad()
    def sample(model: Callable[..., Tensor], x: Tensor, sigmas: Any, extra_args: dict[str, Any] | None = None,
               callback: Callable[[dict[str, Any]], None] | None = None, disable: bool | None = None,
               noise_sampler: Callable[[Any, Any], Tensor] | None = None) -> Tensor:
        if learned is not None:
            grid, method, opts = checked_learned_sigmas(learned, sigmas), learned.solver, learned_options
            to_zero = learned.end == "zero"
        else:
            levels, to_zero = checked_sigmas(sigmas)
            grid, method, opts = custom(sigma_grid_schedule(levels), levels), solver, {**options, "to_zero": to_zero}
        denoiser = X0Model(model, grid.schedule, coords="ve", model_kwargs=extra_args)
        program = Program.compile(denoiser, method, grid, opts, "a k-diffusion sampler")
        check_state(x)
        draw = noise_sampler or (lambda s, s_next: torch.randn_like(x))
        points, carry = program.points, Carry()
        denoiser.finite_checks.record(x, points[0].t, "input")  # NaN/Inf: read once after the loop, as ds.solve
        y = x * points[0].alpha  # x̄ → the plan's VP coordinates (x = α x̄)
        for i in trange(program.steps, disable=disable):
            m = program.fn(y, program.eval_points[i])
            if callback is not None:
                callback({"x": y * (1.0 / points[i].alpha), "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i],
                          "denoised": program.x0(y, m, i)})
            z = _noise(draw, sigmas[i], sigmas[i + 1], x) if program.needs_noise(i) else None
            y = program.step(i, y, m, carry, None if z is None else (lambda _, z=z: z))
        out = y if to_zero else y * (1.0 / points[-1].alpha)  # the step to σ = 0 ends at x̂0 itself
        denoiser.finite_checks.record(out, points[-1].t, "state")
        denoiser.raise_if_not_finite()
        return out

    name = solver if learned is None else learned.solver.name
    sample.__name__ = f"sample_diffsolve_{name}".replace("-", "_")
    sample.__doc__ = f"diffsolve's {name!r} ({options or 'default options'}) as a k-diffusion sampler."
    if learned is not None:
        sample.sigmas = learned_grid(learned)[0]  # type: ignore[attr-defined]
    return sample
