"""Community sampler names ("DPM++ 2M Karras", "Euler a", …) as diffsolve configurations: one table.

Each name is (solver, options, grid recipe, end, variable): the diffsolve solver that computes the same steps, the
peer's default options, how the peer spaces its steps (diffsolve/peer_grids.py), where it ends ("zero": a last step to
σ = 0 that returns x̂0, diffusers' final_sigmas_type="zero" and k-diffusion's trailing 0; "sigma_min": the grid's last
time) and, where the solver's own would not do, the variable it steps in. `resolve(name)` finds a name
case-insensitively, except the six that are also solver names up to case and spaces (Euler, DDIM, UniPC, DEIS, iPNDM,
Heun): 'HEUN' or ' heun' is refused naming both readings, as it may mean either. `.config(schedule, nfe)` builds
the grid for an NFE budget (the solver's steps that fit it, the step to σ = 0 counted in it) and
`.sample_kwargs(schedule, nfe)` gives ds.sample's keywords. The cell plan (diffsolve.plan) resolves a name given as
a solver: `ds.sample(model, x, solver="DPM++ 2M Karras", nfe=10)`. tests/test_export_names.py checks each available
name against its peers' default samplers (same x_T, ≤ 1e-5 relative).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import SolverError
from .grids import Grid
from .peer_grids import GridRecipe
from .schedules import Schedule
from .solvers import SOLVERS, get_solver

LOWER_BELOW_15 = "below 15 calls"  # diffusers' DEIS lowers its final order only with fewer than 15 timesteps


@dataclass(frozen=True)
class Config:
    """A resolved name: what ds.sample runs. `grid` spends the whole budget (the step to σ = 0 included)."""

    solver: str
    grid: Grid
    options: dict[str, Any]
    end: str
    variable: str | None = None  # the ODE's variable (None: the solver's own)


@dataclass(frozen=True)
class NamedSampler:
    """One row of the table."""

    name: str
    solver: str
    grid: GridRecipe
    end: str = "zero"
    options: dict[str, Any] = field(default_factory=dict)
    diffusers: str = ""  # the diffusers scheduler (and config) of that name
    k_diffusion: str = ""  # the k-diffusion sampler of that name
    note: str = ""
    missing: str = ""  # why diffsolve cannot run it yet ("" when it can)
    variable: str = ""  # the ODE's variable the solver steps in ("": the solver's own, diffsolve.plan.own_variable)

    def options_for(self, nfe: int) -> dict[str, Any]:
        """The options at this budget (a rule such as DEIS's 'lower order at the end below 15 calls' applied)."""
        return {k: (nfe < 15 if v == LOWER_BELOW_15 else v) for k, v in self.options.items()}

    def config(self, schedule: Schedule, nfe: int) -> Config:
        """Solver, grid, options, end and variable on `schedule` at `nfe` network calls; refused when diffsolve lacks
        it. The grid has the solver's steps for the budget (Solver.steps_for: the step to σ = 0 counted, whole steps
        only), i.e. the peer's noise levels before σ = 0 (its num_inference_steps): steps + 1 with end zero."""
        if self.missing:
            raise SolverError(f"{self.name!r} is not available in diffsolve yet: {self.missing}")
        to_zero = self.end == "zero"
        steps = get_solver(self.solver).steps_for(nfe, to_zero=to_zero)
        grid = self.grid.build(schedule, steps + int(to_zero), to_zero, self.name)
        return Config(self.solver, grid, self.options_for(nfe), self.end, self.variable or None)

    def sample_kwargs(self, schedule: Schedule, nfe: int) -> dict[str, Any]:
        """ds.sample's keywords for this name at `nfe` calls: solver, grid (spending them), options, end, variable."""
        c = self.config(schedule, nfe)
        return {"solver": c.solver, "grid": c.grid, "end": c.end, "variable": c.variable, **c.options}


_MULTISTEP, _MULTISTEP_KARRAS = GridRecipe("linspace"), GridRecipe("karras")
_K, _K_KARRAS = GridRecipe("linspace", "k"), GridRecipe("karras", "k")
_DPM = "DPMSolverMultistepScheduler()"
_HEUN_NOTE = ("Heun steps in σ̄, then an Euler step to σ = 0 (x̂0): 2k + 1 calls on k + 1 levels; an even budget "
              "spends one call less (whole steps, as every fixed-step solver)")

NAMES: tuple[NamedSampler, ...] = (
    NamedSampler("DPM++ 2M", "dpmpp2m", _MULTISTEP, diffusers=_DPM, k_diffusion="sample_dpmpp_2m"),
    NamedSampler("DPM++ 2M Karras", "dpmpp2m", _MULTISTEP_KARRAS, diffusers=_DPM[:-1] + "use_karras_sigmas=True)",
                 k_diffusion="sample_dpmpp_2m + get_sigmas_karras"),
    NamedSampler("DPM++ 2M SDE", "sde_dpmpp2m", _MULTISTEP, diffusers=_DPM[:-1] + "algorithm_type='sde-dpmsolver++')",
                 k_diffusion="sample_dpmpp_2m_sde", note="noise: generator= (diffusers), noise_sampler= (k-diffusion)"),
    NamedSampler("DPM++ 2M SDE Karras", "sde_dpmpp2m", _MULTISTEP_KARRAS,
                 diffusers=_DPM[:-1] + "algorithm_type='sde-dpmsolver++', use_karras_sigmas=True)",
                 k_diffusion="sample_dpmpp_2m_sde + get_sigmas_karras", note="noise as DPM++ 2M SDE"),
    NamedSampler("Euler", "ddim", _K, diffusers="EulerDiscreteScheduler()", k_diffusion="sample_euler",
                 note="Euler in σ̄ on the DDIM ODE is the DDIM step"),
    NamedSampler("Euler Karras", "ddim", _K_KARRAS, diffusers="EulerDiscreteScheduler(use_karras_sigmas=True)",
                 k_diffusion="sample_euler + get_sigmas_karras"),
    NamedSampler("Euler a", "ddim", _K, options={"eta": 1.0}, diffusers="EulerAncestralDiscreteScheduler()",
                 k_diffusion="sample_euler_ancestral", note="ddim(eta=1) is Euler ancestral; noise: generator="),
    NamedSampler("LMS", "ipndm_v", _K, options={"order": 4}, diffusers="LMSDiscreteScheduler() (step order=4)",
                 k_diffusion="sample_lms", note="variable-step Adams–Bashforth in σ̄ of order 4"),
    NamedSampler("LMS Karras", "ipndm_v", _K_KARRAS, options={"order": 4},
                 diffusers="LMSDiscreteScheduler(use_karras_sigmas=True)",
                 k_diffusion="sample_lms + get_sigmas_karras"),
    NamedSampler("DDIM", "ddim", GridRecipe("leading"), diffusers="DDIMScheduler(clip_sample=False)",
                 note="DDIMScheduler's default clip_sample=True clips x̂0 but keeps ε (no diffsolve option); "
                      "identical whenever x̂0 stays in [−1, 1]"),
    NamedSampler("UniPC", "unipc", _MULTISTEP, options={"lower_order_final": True},
                 diffusers="UniPCMultistepScheduler()", note="solver_order=2 with the corrector: order=3"),
    NamedSampler("DEIS", "deis", _MULTISTEP, end="sigma_min", options={"order": 2, "lower_order_final": LOWER_BELOW_15},
                 diffusers="DEISMultistepScheduler()", note="ends at σ_min, as diffusers' DEIS"),
    NamedSampler("iPNDM", "ipndm", _MULTISTEP, options={"order": 4},
                 diffusers="IPNDMScheduler() (its step on the same σ list)",
                 note="IPNDMScheduler's own σ list starts at σ = 1, outside diffsolve's schedules: the name fixes "
                      "the method, the grid is diffusers' multistep spacing"),
    NamedSampler("Heun", "heun", _K, variable="sigma", diffusers="HeunDiscreteScheduler()", k_diffusion="sample_heun",
                 note=_HEUN_NOTE),
    NamedSampler("Heun Karras", "heun", _K_KARRAS, variable="sigma",
                 diffusers="HeunDiscreteScheduler(use_karras_sigmas=True)",
                 k_diffusion="sample_heun + get_sigmas_karras", note="budget as Heun"),
    NamedSampler("DPM++ 3M SDE", "sde_dpmpp3m", _MULTISTEP, k_diffusion="sample_dpmpp_3m_sde",
                 note="noise: generator=, noise_sampler= (k-diffusion); diffusers' DPMSolverMultistepScheduler("
                      "algorithm_type='sde-dpmsolver++', solver_order=3) is another method (its D2 weight)"),
    NamedSampler("DPM++ 3M SDE Karras", "sde_dpmpp3m", _MULTISTEP_KARRAS,
                 k_diffusion="sample_dpmpp_3m_sde + get_sigmas_karras", note="noise as DPM++ 3M SDE"),
)
_BY_KEY = {" ".join(n.name.lower().split()): n for n in NAMES}


def resolve(name: str) -> NamedSampler:
    """The table's row for a community name, case-insensitive and blind to repeated spaces, except a name that reads
    as a solver's too ('HEUN', ' heun': the solver heun or the sampler Heun?): it must be spelled as the table does."""
    key = " ".join(str(name).lower().split())
    if key not in _BY_KEY:
        raise SolverError(f"unknown sampler name {name!r}; known names: {', '.join(n.name for n in NAMES)} "
                          f"(or a diffsolve solver: diffsolve.solvers.describe())")
    row = _BY_KEY[key]
    if key in SOLVERS and name != row.name:
        what = f"is the solver {key!r}, not" if name == key else f"is neither the solver {key!r} nor"
        raise SolverError(f"{name!r} {what} the sampler name {row.name!r} as spelled; write solver={key!r} for the "
                          f"solver (on the grid= you give), or solver={row.name!r} for the community sampler (its own "
                          f"grid, end point and variable)")
    return row


def is_name(name: Any) -> bool:
    """Whether `name` is a community name of the table (not a diffsolve solver name)."""
    return isinstance(name, str) and " ".join(name.lower().split()) in _BY_KEY


def table_markdown() -> str:
    """The table as Markdown (the README's "Take it home" section shows it)."""
    rows = ["| name | diffsolve solver, options, variable | grid (diffusers' spacing on a DDPM table) | end | peers "
            "| note |",
            "| --- | --- | --- | --- | --- | --- |"]
    for n in NAMES:
        opts = ", ".join(f"{k}={v!r}" for k, v in n.options.items())
        variable = f", variable={n.variable!r}" if n.variable else ""
        solver = f"`{n.solver}`" + (f" ({opts})" if opts else "") + variable if not n.missing else "not yet"
        peers = "; ".join(p for p in (n.diffusers, n.k_diffusion) if p)
        rows.append(f"| {n.name} | {solver} | {n.grid.describe()} | {n.end} | {peers} | {n.missing or n.note} |")
    return "\n".join(rows)
