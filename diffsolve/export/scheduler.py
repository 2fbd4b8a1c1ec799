"""diffsolve's samplers as a diffusers scheduler: `pipe.scheduler = DiffsolveScheduler.from_config(
pipe.scheduler.config, solver="ipndm", grid="file:g.json")`.

diffusers' protocol is stateful (set_timesteps, then step once per network call); diffsolve's loop is a pure
function of a plan. `set_timesteps` compiles the plan once (export/program.py: what ds.solve runs for the same
model, solver, grid and options); `step` is one plan step, and the only state is the carried model outputs and
the step index. The pipeline's `sample` is the model's own x (VP: x = α x0 + σ ε; a flow: (1 − σ) x0 + σ ε), so
init_noise_sigma = 1 and scale_model_input is the identity. The timestep handed to the network is the node's
evaluation time mapped exactly as diffsolve.interop.from_diffusers maps it (N·t − 1 on a DDPM table, N·σ on a
FlowMatch one); the step arithmetic uses the node's own time.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .. import grids as grids_mod
from ..checks import Option
from ..errors import GridError, ModelError, ScheduleError, SolverError
from ..grids import Grid
from ..interop import diffusers_model, flow_schedule_from_diffusers, is_flow_scheduler, schedule_from_diffusers
from ..models import FiniteChecks, Model
from ..schedules import F64, Schedule, from_config
from ..solvers import SOLVERS
from ..solvers.exp.base import Carry, ExpSolver
from ..solvers.learned import LearnedSolver, learned_of
from ..solvers.sde_exponential import ReverseSDEExponential
from .program import Program, resolve_solver
from .schedules import network_times, noise_levels, times_from_network, times_from_noise_levels

try:
    from diffusers.configuration_utils import ConfigMixin, register_to_config
    from diffusers.schedulers.scheduling_utils import SchedulerMixin
    from diffusers.utils import BaseOutput
    from diffusers.utils.torch_utils import randn_tensor
except ImportError as e:  # pragma: no cover - exercised only without diffusers
    raise ModelError(f"diffsolve.export.DiffsolveScheduler needs diffusers ({e}); install it with "
                     f"`pip install diffusers` (or diffsolve's extra: `pip install 'diffsolve[diffusers]'`)") from e

# The DDPM-family and FlowMatch schedulers whose configs DiffsolveScheduler.from_config reads (their other keys,
# timestep_spacing, final_sigmas_type, …, do not apply: the solver, grid and options decide).
COMPATIBLES = ["DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
               "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "PNDMScheduler",
               "LMSDiscreteScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler",
               "FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler"]
PIPELINE_STEP_KWARGS = ("eta", "use_clipped_model_output")  # what DDIMPipeline passes to every step


EXACT = 1e-9  # relative: a timestep this close to an entry of scheduler.timesteps is that entry


def timestep_slack(expected: float) -> float:
    """How far a timestep handed to step() may lie from scheduler.timesteps[i]: pipelines round it to an integer
    (< 1) or to float16 / bfloat16 (half a spacing: ≤ 2^-8 relative, 2 near 1000 in bfloat16), with a margin of 2."""
    return 1.0 + abs(expected) * 2.0**-7


ROUNDED_DTYPES = (torch.float16, torch.bfloat16)  # a timestep in these was rounded: it may equal a neighbour exactly


def timestep_off(expected: Tensor, timestep: Tensor, i: int) -> Tensor:
    """On the device, no sync: a bool tensor, True unless `timestep` is expected[i] within `timestep_slack` and is
    not exactly another entry — unless it is in float16/bfloat16, whose rounding can land on one (NaN is off)."""
    gap = (expected - timestep.to(expected.dtype)).abs()
    slack = 1.0 + expected[i].abs() * 2.0**-7  # timestep_slack, as a tensor
    if timestep.dtype in ROUNDED_DTYPES:
        return ~(gap[i] <= slack)
    exact = gap <= EXACT * expected.abs().clamp(min=1.0)
    return ~(gap[i] <= slack) | (exact.any() & ~exact[i])


def _first(timestep: Tensor) -> Tensor:
    """The one timestep a tensor holds (a batch of equal ones: its first), refused unless a real number; on the host
    a batch of unequal ones is refused (on a device they count as off in the deferred check)."""
    if timestep.numel() == 0 or timestep.is_complex() or timestep.dtype == torch.bool:
        raise SolverError(f"step() takes the timestep as a real number (an entry of scheduler.timesteps), got a tensor "
                          f"of shape {tuple(timestep.shape)} and dtype {timestep.dtype}")
    flat = timestep.reshape(-1)
    if flat.device.type == "cpu" and flat.numel() > 1 and not bool((flat == flat[0]).all()):
        raise SolverError(f"step() got a batch of different timesteps {flat.tolist()[:8]}: every sample of a batch "
                          f"takes the same step; pass one timestep (an entry of scheduler.timesteps)")
    return flat[0]


def _number(timestep: Any) -> float:
    if isinstance(timestep, bool) or not isinstance(timestep, numbers.Real):
        raise SolverError(f"step() takes the timestep as a number or a tensor (an entry of scheduler.timesteps), got "
                          f"{timestep!r}; pass the pipeline's `t` from `for t in scheduler.timesteps`")
    return float(timestep)


STEP_SKIP = ("network call n is the model_output of the n-th DiffsolveScheduler.step since set_timesteps, t its "
             "timestep (checked at once on the CPU, at the last step on a GPU)")


def reads_at_once(value: Tensor) -> bool:
    """Whether step() reads its NaN/Inf checks at once: on the CPU (a read costs no device sync), else at the last
    step only."""
    return value.device.type == "cpu"


@dataclass
class DiffsolveSchedulerOutput(BaseOutput):
    """prev_sample: x at the next node; pred_original_sample: x̂0 at this node (the network's own view)."""

    prev_sample: Tensor
    pred_original_sample: Tensor | None = None


class ModelOutput(nn.Module):
    """A stand-in network: returns the output the pipeline's own network already computed for this step."""

    def __init__(self) -> None:
        super().__init__()
        self.output: Tensor | None = None

    def forward(self, sample: Tensor, timestep: Any = None, return_dict: bool = False, **kwargs: Any) -> tuple:
        return (self.output,)


class DiffsolveScheduler(SchedulerMixin, ConfigMixin):
    """Any diffsolve solver that calls the model once per step, on any diffsolve grid, as a diffusers scheduler.

    solver: ddim, dpmpp2m/3m, dpm2m/3m, deis, unipc, ipndm, ipndm_v, euler (= ddim), and the stochastic ddim
    (eta > 0), ddpm, sde_dpmpp2m/3m (noise from step's generator=). grid: a spec ("logsnr", "karras:rho=7",
    "custom:…", "file:g.json"); a file's times and evaluation times are copied into the config, so
    save_pretrained/from_pretrained carry them bit for bit. options: the solver's (e.g. {"to_zero": True} to end
    at σ = 0 as diffusers' final_sigmas_type="zero": num_inference_steps then counts that step). The schedule: the
    config's DDPM table (num_train_timesteps, beta_*, trained_betas) or, with `shift`, a FlowMatch one; or
    `schedule`, a diffsolve Schedule.to_config(). A learned solver (solver="file:learned.json" or a LearnedSolver)
    brings its grid (evaluation times included), options and end; its whole file is copied into the config
    (`learned`), so a saved scheduler needs no file; it is refused for another schedule (the pipeline's network is
    not seen here: check it with LearnedSolver.load(path, net=unet)).

    A flow's list that starts at σ = 1 (FlowMatch pipelines' sigmas: pure noise, α = 0, outside diffsolve's Flow
    range) begins with the one step every deterministic solver takes from there, x ← x + (σ₁ − 1)·v (x̂0 = x − v:
    the Euler / DDIM step, FlowMatchEulerDiscreteScheduler's own); the solver starts at σ₁ (its warm-up there).
    """

    _compatibles = COMPATIBLES
    order = 1

    @register_to_config
    def __init__(
        self,
        solver: str | LearnedSolver | None = None,
        grid: str = "logsnr",
        options: dict[str, Any] | None = None,
        grid_times: list[float] | None = None,
        grid_eval_times: list[float] | None = None,
        grid_schedule: dict[str, Any] | None = None,
        schedule: dict[str, Any] | None = None,
        learned: dict[str, Any] | None = None,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: list[float] | None = None,
        prediction_type: str = "epsilon",
        shift: float | None = None,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
    ):
        Option("options", "dict", None, "the solver's options", optional=True).check(
            options, owner="DiffsolveScheduler", error=SolverError,
            fix="pass a dict of the solver's options, e.g. options={'to_zero': True} (they are listed by "
                "diffsolve.get_solver(name).options), or leave it out")
        given = learned_of(solver)  # a learned solver ("file:learned.json", a LearnedSolver) brings its grid
        if given is not None:
            self._copy_learned(given, options)
        elif grid_times is None and grids_mod.parse(grid).path is not None:
            self._copy_grid_file(grids_mod.parse(grid).path or "", solver, options)
        elif solver is None:
            self.register_to_config(solver="dpmpp2m")
        self._learned = None if self.config.learned is None else LearnedSolver.from_data(
            dict(self.config.learned), "DiffsolveScheduler's learned solver")
        resolve_solver(self._method, self.options, "DiffsolveScheduler")
        self._output = ModelOutput()  # the network's output of the current step, read once by the model view
        self.init_noise_sigma = 1.0
        self.timesteps = torch.empty(0)
        self.sigmas = torch.empty(0)
        self.num_inference_steps: int | None = None
        self.model: Model | None = None if use_dynamic_shifting else self._model(None)
        self.program: Program | None = None
        self._carry = Carry()
        self._index = 0
        self._begin_index: int | None = None
        self._begin = 0
        self._from_noise = False  # the list starts at σ = 1: a first step x ← x + (σ₁ − 1)·v before the plan
        self._head = False  # that step is still to come in this pass (not skipped by set_begin_index)
        self._grid: Grid | None = None
        self._expected: list[float] = []
        self._mismatch: Tensor | None = None
        self._checks = FiniteChecks(STEP_SKIP)
        if self.model is not None and self.config.grid_times is not None:
            self._stored_grid(self.model.schedule)  # a wrong schedule is refused here, not at the first call

    # ---- configuration ----------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any = None, return_unused_kwargs: bool = False, **kwargs: Any) -> Any:
        """ConfigMixin.from_config, keeping a FlowMatch config's `shift` even when it is that scheduler's default
        (diffusers drops keys listed in _use_default_values, and a flow is told apart by its shift)."""
        if isinstance(getattr(config, "config", None), Mapping):  # a scheduler itself: its config
            config = config.config
        if not isinstance(config, str):  # (a str is diffusers' own deprecated route: a saved config's path)
            Option("config", "dict", doc="a diffusers scheduler config").check(
                config, owner="DiffsolveScheduler.from_config", error=ScheduleError,
                fix="pass a scheduler's config, e.g. DiffsolveScheduler.from_config(pipe.scheduler.config, "
                    "solver='dpmpp2m'), or load a saved one with DiffsolveScheduler.from_pretrained(path)")
        if isinstance(config, Mapping) and "shift" not in kwargs and is_flow_scheduler(config):
            kwargs["shift"] = float(config["shift"])
        return super().from_config(config, return_unused_kwargs, **kwargs)

    def _copy_learned(self, learned: LearnedSolver, options: dict[str, Any] | None) -> None:
        """Copy a learned solver into the config: its file's data (weights, fingerprints), its grid's times,
        evaluation times and schedule, and its options (a call's prediction options, threshold=…, over them)."""
        if self.config.grid_times is not None or self.config.grid != "logsnr":
            raise SolverError("a learned solver brings its own grid; drop grid= / grid_times= (DiffsolveScheduler("
                              "solver='file:learned.json') alone)")
        grid = learned.grid
        self.register_to_config(
            solver=learned.solver.name, grid="learned", options={**learned.solver.learned_options, **(options or {})},
            grid_times=grid.t.tolist(), grid_eval_times=None if grid.t_eval is None else grid.t_eval.tolist(),
            grid_schedule=grid.schedule.to_config(), learned=learned.file_data())

    @property
    def _method(self) -> str | ExpSolver:
        """The solver the plan runs: the config's name, or the learned solver its config carries."""
        return self.config.solver if self._learned is None else self._learned.solver

    @property
    def _reverse_sde(self) -> bool:
        """Whether the solver samples the reverse SDE by its name (ddpm, sde_dpmpp2m/3m: η = 1)."""
        method = self._method
        return isinstance(method if isinstance(method, ExpSolver) else SOLVERS.get(method), ReverseSDEExponential)

    def _copy_grid_file(self, path: str, solver: str | None, options: dict[str, Any] | None) -> None:
        """Copy a grid file's times, evaluation times and schedule into the config (and, when no solver is given,
        the solver and options it was tuned for); a learned solver's file is refused (it goes to solver=)."""
        data = grids_mod.read_file(path)
        grids_mod.check_file(data, path)
        eval_times = grids_mod.eval_times_of(data, path)
        self.register_to_config(grid_times=[float(t) for t in data["times"]], grid_schedule=data["schedule"],
                                grid_eval_times=None if eval_times is None else eval_times.tolist())
        if solver is None:
            tuned_options = data.get("options") if isinstance(data.get("options"), dict) else {}
            self.register_to_config(solver=data.get("solver") or "dpmpp2m",
                                    options=options if options is not None else tuned_options)

    @property
    def flow(self) -> bool:
        """Whether the model is a rectified flow (a FlowMatch config: `shift` set, or a Flow schedule)."""
        if self.config.schedule is not None:
            return self.config.schedule.get("type") == "Flow"
        return is_flow_scheduler(self.config)

    def _schedule(self, mu: float | None) -> Schedule:
        cfg = self.config
        if cfg.schedule is not None:
            return from_config(dict(cfg.schedule))
        if not self.flow:
            return schedule_from_diffusers(cfg)
        if cfg.use_dynamic_shifting:
            if mu is None:
                raise ModelError("this FlowMatch config shifts its times by resolution (use_dynamic_shifting=True): "
                                 "pass mu= to set_timesteps (the pipeline does), or set shift and "
                                 "use_dynamic_shifting=False")
            shift = float(torch.tensor(mu, dtype=F64).exp()) if cfg.time_shift_type == "exponential" else float(mu)
            return flow_schedule_from_diffusers(cfg, shift)
        return flow_schedule_from_diffusers(cfg)

    def _model(self, mu: float | None) -> Model:
        """The diffsolve Model of the pipeline's network on this config (interop.diffusers_model), whose network
        is a stand-in returning the step's model_output."""
        model = diffusers_model(self._output, self._schedule(mu), self.config,
                                prediction_type=None if self.flow else self.config.prediction_type)
        model.check_finite = False  # the pipeline owns the network; its outputs are not re-read here
        return model

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.config.options or {})

    @property
    def alphas_cumprod(self) -> Tensor | None:
        """ᾱ_n of the DDPM table (float32, as diffusers' schedulers hold it); None for a flow."""
        if self.flow:
            return None
        return schedule_from_diffusers(self.config).alphas_cumprod.to(torch.float32)

    # ---- the grid --------------------------------------------------------------------------------------------
    def _stored_grid(self, schedule: Schedule) -> Grid:
        cfg = self.config
        if self._learned is not None:
            self._learned.check("DiffsolveScheduler's learned solver", schedule)
        elif cfg.grid_schedule is not None:
            grids_mod.check_file({"schedule": dict(cfg.grid_schedule)}, cfg.grid, schedule)
        eval_times = None if cfg.grid_eval_times is None else torch.tensor(cfg.grid_eval_times, dtype=F64)
        return Grid(schedule, torch.tensor(cfg.grid_times, dtype=F64), cfg.grid, eval_times)

    def _build_grid(self, schedule: Schedule, n: int | None, timesteps: Any, sigmas: Any) -> Grid:
        """The grid of this call: the config's own times, a spec with the steps that spend n calls, or a list."""
        given = [k for k, v in (("num_inference_steps", n), ("timesteps", timesteps), ("sigmas", sigmas))
                 if v is not None]
        to_zero = bool(self.options.get("to_zero", False))
        if self.config.grid_times is not None:
            if timesteps is not None or sigmas is not None:
                raise GridError(f"this scheduler runs its own grid ({self.config.grid!r}); drop timesteps=/sigmas=, "
                                f"or make a scheduler with grid='custom:…'")
            grid = self._stored_grid(schedule)
            calls = grid.steps + int(to_zero)
            if n is not None and n != calls:
                raise GridError(f"grid {self.config.grid!r} makes {calls} network calls, but num_inference_steps={n} "
                                f"was asked for; pass num_inference_steps={calls} (or leave it out)")
            return grid
        spec = grids_mod.parse(self.config.grid)
        if spec.fixed and timesteps is None and sigmas is None:  # custom:… carries its own times
            grid = grids_mod.build(spec, schedule)
            if n is not None and n != grid.steps + int(to_zero):
                raise GridError(f"grid {self.config.grid!r} makes {grid.steps + int(to_zero)} network calls, but "
                                f"num_inference_steps={n} was asked for; leave it out")
            return grid
        if len(given) != 1:
            raise GridError(f"set_timesteps takes exactly one of num_inference_steps, timesteps or sigmas; got "
                            f"{', '.join(given) or 'none'}")
        if n is not None:
            whole = isinstance(n, numbers.Integral) and not isinstance(n, bool)  # numpy integers too
            steps = int(n) - 1 if whole and to_zero else int(n) if whole else 0
            if steps < 1:
                raise GridError(f"num_inference_steps must be an integer >= {2 if to_zero else 1}"
                                f"{' (one call goes to the step to σ = 0)' if to_zero else ''}, got {n!r}")
            return grids_mod.build(self.config.grid, schedule, steps)
        return self._grid_from_list(schedule, timesteps, sigmas, to_zero)

    def _grid_from_list(self, schedule: Schedule, timesteps: Any, sigmas: Any, to_zero: bool) -> Grid:
        """One node per listed value (one network call each); the last step goes to σ = 0 (to_zero, or a listed
        final sigma 0) or to the schedule's σ_min."""
        what = "timesteps" if timesteps is not None else "sigmas"
        values = grids_mod.times_tensor(timesteps if timesteps is not None else sigmas, what)
        if not bool(torch.isfinite(values).all()):
            raise GridError(f"{what} must be finite numbers, got {values.tolist()}")
        if values.numel() > 1 and not bool((values[1:] < values[:-1]).all()):
            raise GridError(f"{what} must be strictly descending (noise → data), got {values.tolist()}; pass them "
                            f"from the noisiest to the cleanest (reversed)")
        if sigmas is not None and values.numel() and float(values[-1]) == 0.0:
            if self.options.get("to_zero") is False:
                raise GridError("the sigmas end with 0 (a last step to σ = 0) but the options say to_zero=False; "
                                "drop the final 0 or the option")
            values, to_zero = values[:-1], True
            self.register_to_config(options={**self.options, "to_zero": True})
        values = self._drop_pure_noise(values, what)
        if values.numel() == 0:
            raise GridError(f"{what} is empty; give at least one value")
        t = (times_from_network(schedule, values, self.model.time_scale) if timesteps is not None  # type: ignore
             else times_from_noise_levels(schedule, values))
        self._check_range(schedule, t, values, what)
        slack = 1e-12 * max(1.0, abs(schedule.t_max))
        if not to_zero and float(t[-1]) <= schedule.t_min + slack:  # e.g. DDIM's list, which ends at timestep 0
            if self.options.get("to_zero") is False or t.numel() < 2:
                raise GridError(f"the {what} end at the schedule's last time ({values[-1].item():g}), from which "
                                f"only a step to σ = 0 is left; drop the last value, or allow to_zero and give at "
                                f"least two values")
            to_zero = True  # its call is the last step's, to σ = 0 (diffusers: set_alpha_to_one / final σ = 0)
            self.register_to_config(options={**self.options, "to_zero": True})
        if not to_zero:
            t = torch.cat([t, torch.tensor([schedule.t_min], dtype=F64)])
        return grids_mod.custom(schedule, t)

    def _check_range(self, schedule: Schedule, t: Tensor, values: Tensor, what: str) -> None:
        """Listed values whose times lie outside the schedule's [t_min, t_max] are refused in the list's own units."""
        slack = 1e-12 * max(1.0, abs(schedule.t_max))
        outside = (t < schedule.t_min - slack) | (t > schedule.t_max + slack)
        if not bool(outside.any()):
            return
        ends = torch.tensor([schedule.t_max, schedule.t_min], dtype=F64)
        lims = (network_times(self.model, ends) if what == "timesteps" else noise_levels(schedule, ends)).tolist()
        raise GridError(f"{what} {values[outside].tolist()} lie outside this schedule's range: its {what} go from "
                        f"{lims[0]:.6g} (noisiest) down to {lims[1]:.6g}; give values in that range")

    def _drop_pure_noise(self, values: Tensor, what: str) -> Tensor:
        """A flow's list without its first entry when that is σ = 1 (network time `time_scale`), which sets
        `_from_noise`; the values otherwise."""
        model = self.model
        assert model is not None
        one = 1.0 if what == "sigmas" else float(model.time_scale)
        self._from_noise = bool(self.flow and values.numel() and abs(float(values[0]) - one) <= 1e-6 * one)
        if not self._from_noise:
            return values
        if model.time_input_fn is not None or self._reverse_sde or self.options.get(
                "eta", 0.0):
            raise GridError(f"{what} start at σ = 1 (pure noise), which this scheduler starts from only with a "
                            f"deterministic solver (x ← x + (σ₁ − 1)·v); drop the first entry, or use ddim (eta=0), "
                            f"dpmpp2m, unipc, …")
        if values.numel() < 2 or (what == "sigmas" and float(values[1]) == 0.0):
            raise GridError(f"{what} {values.tolist()} go from σ = 1 straight to the end; give at least one σ "
                            f"between 1 and 0")
        return values[1:]

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      timesteps: list[float] | None = None, sigmas: list[float] | None = None,
                      mu: float | None = None) -> None:
        """Compile the plan for num_inference_steps network calls (or the listed timesteps / sigmas, or the
        config's own grid) and start over. mu: the resolution shift of a dynamically shifted FlowMatch config."""
        if self.model is None or mu is not None:
            self.model = self._model(mu)
        self._from_noise = False  # set again by a list that starts at σ = 1
        grid = self._build_grid(self.model.schedule, num_inference_steps, timesteps, sigmas)
        self._grid = grid
        self._compile(0)
        calls = self.program.steps  # type: ignore[union-attr]
        net = network_times(self.model, grid.t_eval if grid.decoupled else grid.t)[:calls]
        dtype = torch.float32 if torch.device(device or "cpu").type == "mps" else F64
        self.timesteps = net.to(device=device, dtype=dtype)
        self._expected = net.tolist()
        levels = noise_levels(grid.schedule, grid.t)
        if calls > grid.steps:
            levels = torch.cat([levels, torch.zeros(1, dtype=F64)])
        if self._from_noise:  # the network's time at σ = 1 is time_scale (a flow's model time is σ)
            net = torch.cat([torch.tensor([float(self.model.time_scale)], dtype=F64), net])
            levels, calls = torch.cat([torch.ones(1, dtype=F64), levels]), calls + 1
            self.timesteps = net.to(device=device, dtype=dtype)
            self._expected = net.tolist()
        self.sigmas = levels
        self.num_inference_steps = calls
        self._head = self._from_noise

    def _compile(self, begin: int) -> None:
        """The plan from node `begin` on (warm-up restarts there), and an empty carry."""
        grid = self._grid
        assert grid is not None and self.model is not None
        if begin and self._learned is not None:
            raise SolverError(f"a learned solver's weights hold for its whole grid ({grid.steps} steps from noise); "
                              f"it cannot begin at step {begin} (image-to-image): use a solver such as "
                              f"{self._learned.solver.base.name!r} on a grid for that, or begin at 0")
        if begin:
            last = grid.steps + int(bool(self.options.get("to_zero", False))) - 1
            if begin > min(last, grid.steps - 1):
                raise SolverError(f"cannot begin at step {begin}: the plan has {last + 1} steps and a start needs at "
                                  f"least one grid step after it; begin earlier")
            grid = Grid(grid.schedule, grid.t[begin:], grid.name,
                        None if grid.t_eval is None else grid.t_eval[begin:])
        self.program = Program.compile(self.model, self._method, grid, self.options, "DiffsolveScheduler")
        self._carry, self._index, self._begin, self._mismatch = Carry(), begin, begin, None
        self._checks = FiniteChecks(STEP_SKIP)

    # ---- the protocol ----------------------------------------------------------------------------------------
    @property
    def step_index(self) -> int | None:
        """The index of the next step in `timesteps` (None before set_timesteps)."""
        return None if self.program is None else self._index

    @property
    def begin_index(self) -> int | None:
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at timesteps[begin_index] (image-to-image); the multistep warm-up restarts there."""
        if self.program is None:
            raise SolverError("call set_timesteps before set_begin_index")
        self._begin_index = begin_index
        head = int(self._from_noise)  # timesteps[0] is then the step from σ = 1, before the plan's nodes
        self._compile(max(begin_index - head, 0))
        self._head = bool(head) and begin_index == 0
        self._index = self._begin = begin_index

    def scale_model_input(self, sample: Tensor, timestep: Any = None) -> Tensor:
        """The identity: the sample is already the network's input x (init_noise_sigma = 1)."""
        return sample

    def __len__(self) -> int:
        return int(self.config.num_train_timesteps)

    def _check_timestep(self, timestep: Any) -> int:
        """The index of this step; a timestep out of order, not finite, or no timestep of the plan is refused (on the
        host at once; a device timestep is compared on the device and checked, with one read, at the last step).
        A value rounded by the pipeline (to an integer, float16 or bfloat16) matches within `timestep_slack`."""
        i, program = self._index, self.program
        if program is None:
            raise SolverError("call set_timesteps(num_inference_steps) before step()")
        if i >= self._begin + int(self._head) + program.steps:
            raise SolverError(f"all {len(self._expected)} steps are done; call set_timesteps(...) to sample again")
        if isinstance(timestep, Tensor) and timestep.device.type != "cpu":
            flat = timestep.reshape(-1)
            off = timestep_off(self.timesteps.to(timestep.device), _first(timestep), i) | (flat != flat[0]).any()
            self._mismatch = off if self._mismatch is None else self._mismatch | off
            return i
        value = float(_first(timestep)) if isinstance(timestep, Tensor) else _number(timestep)
        expected_i = self._expected[i]
        exact = [k for k, e in enumerate(self._expected) if abs(e - value) <= EXACT * max(1.0, abs(e))]
        near = abs(value - expected_i) <= timestep_slack(expected_i)  # False for NaN
        rounded = isinstance(timestep, Tensor) and timestep.dtype in ROUNDED_DTYPES  # may land on a neighbour exactly
        if near and (not exact or i in exact or rounded):
            return i
        order = "call step once per timestep, in the order of scheduler.timesteps (set_timesteps starts over; to " \
                "start later, set_begin_index first)"
        if exact or not math.isfinite(value):
            at = f" (timesteps[{exact[0]}])" if exact else " (not a finite number)"
            raise SolverError(f"step() was called with timestep {value:g}{at} but the next step is timesteps[{i}] = "
                              f"{expected_i:g}; {order}")
        raise SolverError(f"step() was called with timestep {value:g}, which is no timestep of this scheduler: the "
                          f"next step is timesteps[{i}] = {expected_i:g} (a value rounded to an integer, float16 or "
                          f"bfloat16 matches within ±{timestep_slack(expected_i):.3g}); {order}")

    def _check_deferred(self) -> None:
        if self._mismatch is not None and bool(self._mismatch):
            raise SolverError("step() was called with a timestep that is not the next entry of scheduler.timesteps "
                              "(out of order, NaN, or no timestep of this scheduler); call step once per timestep, in "
                              "order (set_timesteps starts over)")

    def step(self, model_output: Tensor, timestep: Any, sample: Tensor, generator: Any = None,
             return_dict: bool = True, variance_noise: Tensor | None = None, **pipeline_kwargs: Any) -> Any:
        """x at the next node from the network's output at this one: one plan step (x ← a·x + Σ_j w_j m_j + std·z),
        z from `variance_noise` or drawn from `generator` (stochastic solvers)."""
        self._check_pipeline_kwargs(pipeline_kwargs)
        i = self._check_timestep(timestep)
        program = self.program
        assert program is not None and self.model is not None
        if self._head and i == self._begin:
            return self._step_from_noise(model_output, sample, i, return_dict)
        k = i - self._begin - int(self._head)
        self._output.output = model_output
        try:
            m = program.fn(sample, program.eval_points[k])
        finally:
            self._output.output = None
        x0 = program.x0(sample, m, k)
        noise = None
        if program.needs_noise(k):
            z = variance_noise if variance_noise is not None else randn_tensor(
                sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            noise = lambda _: z.to(sample.dtype)  # noqa: E731
        prev = program.step(k, sample, m, self._carry, noise)
        self._index = i + 1
        last = k == program.steps - 1
        if last:
            self._check_deferred()
        self._check_finite(model_output, sample, prev if last else None, i)
        if not return_dict:
            return prev, x0
        return DiffsolveSchedulerOutput(prev_sample=prev, pred_original_sample=x0)

    def _step_from_noise(self, v: Tensor, sample: Tensor, i: int, return_dict: bool) -> Any:
        """The step from σ = 1 to the plan's first node σ₁: x ← x + (σ₁ − 1)·v, with x̂0 = x − v (at σ = 1 the
        velocity is v = ε − x0 and x = ε)."""
        prev, x0 = sample + (float(self.sigmas[1]) - 1.0) * v, sample - v
        self._index += 1
        self._check_finite(v, sample, None, i)
        if not return_dict:
            return prev, x0
        return DiffsolveSchedulerOutput(prev_sample=prev, pred_original_sample=x0)

    def _check_finite(self, model_output: Tensor, sample: Tensor, end: Tensor | None, i: int) -> None:
        """NaN/Inf checks as in ds.solve, labelled with timesteps[i]: the pass's input sample (at its first step),
        each model_output and the `end` state (at the last step), one device sum each; read at once on the CPU,
        else once at the last step (no host sync per step on a GPU). A ModelError names the first bad one."""
        checks, t = self._checks, self._expected[i]
        if i == self._begin:
            checks.record(sample, t, "input")
        checks.record(model_output, t)
        if end is not None:
            checks.record(end, t, "state")
        if end is not None or reads_at_once(model_output):
            checks.raise_if_bad()

    def _check_pipeline_kwargs(self, kwargs: dict[str, Any]) -> None:
        unknown = sorted(set(kwargs) - set(PIPELINE_STEP_KWARGS))
        if unknown:
            raise SolverError(f"DiffsolveScheduler.step takes no argument(s) {', '.join(unknown)}; solver options go "
                              f"to the scheduler: DiffsolveScheduler(..., options={{...}})")
        eta = kwargs.get("eta")
        mine = float(self.options.get("eta", 1.0 if self._reverse_sde else 0.0))
        if eta not in (None, 0, 0.0) and float(eta) != mine:
            raise SolverError(f"the pipeline passed eta={eta}, but this scheduler's solver {self.config.solver!r} "
                              f"runs eta={mine:g}; set it on the scheduler: DiffsolveScheduler(solver='ddim', "
                              f"options={{'eta': {eta}}}) (the pipeline's default eta=0 is ignored)")

    # ---- noising -----------------------------------------------------------------------------------------------
    def _times_of(self, timesteps: Any) -> Tensor:
        """Times t of network timesteps: a node's own time when the value is one of `timesteps` (decoupled
        evaluation times map back to their node), else the inverse of the network-time map."""
        values = torch.as_tensor(timesteps).detach().cpu().to(F64).reshape(-1)
        if self.model is None:
            self.model = self._model(None)
        t = times_from_network(self.model.schedule, values, self.model.time_scale)
        if self._grid is not None and self._expected:
            for j, v in enumerate(values.tolist()):
                hits = [k for k, e in enumerate(self._expected) if abs(e - v) <= 1e-9 * max(1.0, abs(e))]
                if hits and hits[0] < self._grid.t.numel():
                    t[j] = self._grid.t[hits[0]]
        return t

    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps: Any) -> Tensor:
        """x_t = α_t x0 + σ_t ε at the times of `timesteps` (one per sample, or one for all)."""
        t = self._times_of(timesteps)
        schedule = self.model.schedule  # type: ignore[union-attr]
        slack = 1e-9 * max(1.0, abs(schedule.t_max))
        if not bool(((t >= schedule.t_min - slack) & (t <= schedule.t_max + slack)).all()):
            given = torch.as_tensor(timesteps).reshape(-1).tolist()
            raise GridError(f"add_noise: timesteps {given[:8]}{' …' if len(given) > 8 else ''} lie outside this "
                            f"scheduler's schedule (times {t.min().item():.6g}…{t.max().item():.6g}, the schedule "
                            f"runs {schedule.t_min:g}…{schedule.t_max:g}); give timesteps in the network's own range, "
                            f"e.g. values of scheduler.timesteps")
        shape = (-1,) + (1,) * (original_samples.ndim - 1)
        alpha = schedule.alpha(t).to(original_samples.device, original_samples.dtype).reshape(shape)
        sigma = schedule.sigma(t).to(original_samples.device, original_samples.dtype).reshape(shape)
        return alpha * original_samples + sigma * noise

    def scale_noise(self, sample: Tensor, timestep: Any, noise: Tensor | None = None) -> Tensor:
        """FlowMatch pipelines' name for add_noise: (1 − σ) x0 + σ ε."""
        if noise is None:
            raise ModelError("scale_noise needs noise=")
        return self.add_noise(sample, noise, timestep)

    @property
    def schedule(self) -> Schedule | None:
        """The diffsolve schedule the grid lies on (None before it is known: a dynamically shifted flow)."""
        return None if self.model is None else self.model.schedule
