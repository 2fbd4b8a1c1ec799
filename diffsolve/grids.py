"""Step grids: strictly monotone float64 times t_0 (start) … t_N (end) with exact end points.

time:      uniform in t;           logsnr:  uniform in λ (half log-SNR);
quadratic: uniform in √t;          karras:  σ̄_i = (σ̄_max^{1/ρ} + i/N (σ̄_min^{1/ρ} − σ̄_max^{1/ρ}))^ρ.
Sampling grids run from noisy (large t) to clean (small t); forward-SDE grids the other way.

Wherever a grid is named it may be a spec: `karras` or `karras:rho=5` (parameters KEY=VALUE joined
by ':'), `custom:1.0,0.5,0.1,0.001` (the times themselves) or `file:grid.json` (a JSON object with
"times" and "schedule" (Schedule.to_config()), optionally "solver", "nfe", "fingerprint"…; it refuses a
solve on another schedule, and another problem's fingerprint where the problem is known). `ds.grids.tune(…)`
(diffsolve.tuning.tune, bound here by the package) writes such files tuned to a model and solver.
`register(name, factory)` adds a named grid,
factory(schedule, steps, **params) → Grid.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .checks import Option
from .errors import GridError, unknown_name
from .jsonfile import read_json
from .points import shared_points
from .schedules import F64, Schedule, as_f64, from_config
from .userpaths import write_text
from .valuecache import ValueCache

MAX_STEPS = 10**7  # a grid's steps at most: ~2 GB of Python-float points and coefficients


@dataclass(frozen=True)
class Grid:
    """A validated step grid: float64 times `t` (length steps + 1) on a schedule.

    `t_eval` (optional, same length): decoupled evaluation times — the network is called at (x_i, t_eval[i])
    while the step arithmetic uses t_i (time-shifted sampling); None means t_eval = t. Tuned grids carry them
    (diffsolve.tuning); only solvers that evaluate the model at the grid nodes accept them.
    """

    schedule: Schedule
    t: Tensor
    name: str = "custom"
    t_eval: Tensor | None = None
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_schedule(self.schedule)
        t = times_tensor(self.t, "grid times")
        if torch.isfinite(t).all():
            t = self.schedule.snap_times(t)  # a float32 end a rounding beyond the schedule's is that end
        object.__setattr__(self, "t", t)
        if self.t_eval is not None:
            object.__setattr__(self, "t_eval", self._checked_eval_times(t))
        if t.numel() < 2:
            raise GridError(
                f"a grid needs at least 2 times (1 step), got {t.numel()}; pass steps >= 1"
            )
        check_steps(t.numel() - 1)
        if not bool(torch.isfinite(t).all()):
            raise GridError(f"grid times must be finite, got {t.tolist()}")
        d = torch.diff(t)
        if not (bool((d < 0).all()) or bool((d > 0).all())):
            bad = int(((d >= 0) if d[0] < 0 else (d <= 0)).nonzero()[0, 0])
            raise GridError(
                f"grid times must be strictly monotone; t[{bad}] = {t[bad].item():.17g} and "
                f"t[{bad + 1}] = {t[bad + 1].item():.17g} break the order. Sort the times "
                f"(descending for sampling) and remove repeats"
            )
        self.schedule.check_times(t, "grid")

    def _checked_eval_times(self, t: Tensor) -> Tensor:
        te = times_tensor(self.t_eval, "grid evaluation times (t_eval)")
        if torch.isfinite(te).all():
            te = self.schedule.snap_times(te)
        if te.numel() != t.numel():
            raise GridError(f"t_eval has {te.numel()} times but the grid has {t.numel()}; give one evaluation "
                            f"time per grid time (or t_eval=None)")
        if not bool(torch.isfinite(te).all()):
            raise GridError(f"grid evaluation times must be finite, got {te.tolist()}")
        self.schedule.check_times(te, "grid evaluation time")
        return te

    @property
    def decoupled(self) -> bool:
        """True when the network is evaluated at times other than the step times (t_eval given)."""
        return self.t_eval is not None

    @property
    def eval_points(self) -> list:
        """The points the network is evaluated at, node by node: those of t_eval, or the grid's own points."""
        if self.t_eval is None:
            return self.points
        return self.memo("eval_points", lambda: shared_points(self.schedule, self.t_eval))

    def memo(self, key: Any, build: Callable[[], Any]) -> Any:
        """Per-grid cache of precomputed coefficients: build() runs once per key."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    @property
    def points(self) -> list:
        """Schedule quantities (diffsolve.points.Point) at every grid time, computed once per distinct times."""
        memo = self._memo
        if "points" in memo:
            return memo["points"]
        return self.memo("points", lambda: shared_points(self.schedule, self.t))

    @property
    def steps(self) -> int:
        """Number of steps N (the grid has N + 1 times)."""
        return self.t.numel() - 1

    @cached_property
    def decreasing(self) -> bool:
        """True for sampling grids (noisy → clean)."""
        return bool(self.t[1] < self.t[0])

    @cached_property
    def lam(self) -> Tensor:
        """λ at each grid time (float64)."""
        return self.schedule.lam(self.t)

    @cached_property
    def sigma_bar(self) -> Tensor:
        """σ̄ at each grid time (float64)."""
        return self.schedule.sigma_bar(self.t)

    @cached_property
    def alpha(self) -> Tensor:
        """α at each grid time (float64)."""
        return self.schedule.alpha(self.t)

    @cached_property
    def sigma(self) -> Tensor:
        """σ at each grid time (float64)."""
        return self.schedule.sigma(self.t)

    def __len__(self) -> int:
        return self.t.numel()

    def __repr__(self) -> str:
        shifted = "" if self.t_eval is None else ", decoupled t_eval"
        return f"Grid({self.name}, steps={self.steps}, t={self.t[0].item():.6g}→{self.t[-1].item():.6g}{shifted})"


def check_schedule(schedule: Any) -> Schedule:
    """`schedule` unless it is not a diffsolve Schedule (a name, None, a diffusers scheduler): then a GridError."""
    if not isinstance(schedule, Schedule):
        raise GridError(f"a grid's schedule must be a diffsolve Schedule such as diffsolve.VPLinear(), got "
                        f"{schedule!r}; pass the schedule object (e.g. model.schedule), not its name")
    return schedule


def _ends(schedule: Schedule, t_start: float | None, t_end: float | None) -> tuple[float, float]:
    """(t_start, t_end), defaulting to the schedule's ends, checked to lie inside its range."""
    t0 = schedule.t_max if t_start is None else float(t_start)
    t1 = schedule.t_min if t_end is None else float(t_end)
    schedule.check_times(torch.tensor([t0, t1], dtype=F64), "grid end")
    return t0, t1


def times_tensor(values: Any, what: str = "grid times") -> Tensor:
    """`values` (a 1-D list or tensor of real numbers) as a float64 CPU tensor; anything else is a GridError naming
    it: strings, complex or bool entries, and a list of lists or a 2-D tensor (not flattened: say which row)."""
    if isinstance(values, Tensor):
        if values.is_complex() or values.dtype == torch.bool:
            raise GridError(f"{what} must be real numbers, got a tensor of dtype {values.dtype}; pass float times")
        if values.device.type == "meta":
            raise GridError(f"{what} are a tensor on the 'meta' device, which holds no values; pass the times "
                            f"themselves, e.g. torch.tensor([1.0, 0.5, 0.001]) (on the CPU)")
        t = values.detach().to(device="cpu", dtype=F64)
    else:
        if isinstance(values, (str, bytes)) or (isinstance(values, (list, tuple)) and any(
                isinstance(v, (str, bytes, bool)) for v in values)):
            raise GridError(f"{what} must be numbers, got {values!r}; pass floats, e.g. [1.0, 0.5, 0.001]")
        try:
            t = torch.as_tensor(values, dtype=F64)
        except (TypeError, ValueError, RuntimeError) as e:
            raise GridError(f"{what} must be a 1-D list or tensor of numbers, got {values!r} ({e}); pass floats, "
                            f"e.g. [1.0, 0.5, 0.001]") from None
    if t.ndim != 1 and t.numel() > 1:
        raise GridError(f"{what} must be a 1-D list or tensor, got shape {tuple(t.shape)}; pick one row (e.g. "
                        f"t[0]) or flatten it on purpose with t.reshape(-1)")
    return t.reshape(-1)


def check_steps(steps: Any) -> int:
    """`steps` as an int, refused unless a positive integer of at most MAX_STEPS (every grid is made through this
    bound: the named builders, specs, custom times, ds.sample's budget and the diffusers scheduler)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise GridError(f"steps must be a positive integer, got {steps!r}")
    if steps > MAX_STEPS:
        raise GridError(f"{steps} steps would need about {steps * 200 / 2**30:.3g} GiB for the grid's points and "
                        f"coefficients alone; use at most {MAX_STEPS} steps (if you mean it, raise "
                        f"diffsolve.grids.MAX_STEPS)")
    return steps



def _finish(schedule: Schedule, t: Tensor, t0: float, t1: float, name: str) -> Grid:
    t = t.clone()
    t[0], t[-1] = t0, t1  # exact end points, free of inverse-map round-off
    return Grid(schedule, t, name)


def time(schedule: Schedule, steps: int, t_start: float | None = None, t_end: float | None = None) -> Grid:
    """Uniform in t from t_start (default t_max) to t_end (default t_min)."""
    check_steps(steps)
    t0, t1 = _ends(schedule, t_start, t_end)
    return _finish(schedule, torch.linspace(t0, t1, steps + 1, dtype=F64), t0, t1, "time")


def logsnr(schedule: Schedule, steps: int, t_start: float | None = None, t_end: float | None = None) -> Grid:
    """Uniform in λ = log(α/σ) (DPM-Solver's 'logSNR' grid)."""
    check_steps(steps)
    t0, t1 = _ends(schedule, t_start, t_end)
    schedule.check_times(torch.tensor([t0, t1], dtype=F64), "grid end")
    lam = torch.linspace(float(schedule.lam(t0)), float(schedule.lam(t1)), steps + 1, dtype=F64)
    return _finish(schedule, schedule.t_from_lambda(lam), t0, t1, "logsnr")


def quadratic(schedule: Schedule, steps: int, t_start: float | None = None, t_end: float | None = None) -> Grid:
    """Uniform in √t (DPM-Solver's 'time_quadratic' grid), denser near the clean end."""
    check_steps(steps)
    t0, t1 = _ends(schedule, t_start, t_end)
    return _finish(schedule, torch.linspace(t0**0.5, t1**0.5, steps + 1, dtype=F64) ** 2, t0, t1, "quadratic")


KARRAS_MAX_RHO = 1e6  # σ̄^(1/ρ) within ~1e-5 of 1 already: larger ρ only loses the times to float64 round-off


def karras(
    schedule: Schedule, steps: int, rho: float = 7.0, t_start: float | None = None, t_end: float | None = None
) -> Grid:
    """Karras et al. (EDM): uniform in σ̄^{1/ρ}."""
    check_steps(steps)
    rho = Option("rho", "float", 7.0, "the Karras grid's exponent: uniform in σ̄^(1/ρ); above 1e6 the times collapse "
                 "onto each other in float64", low=0.0, open_low=True, high=KARRAS_MAX_RHO).check(
        rho, owner="grid 'karras'", fix="EDM uses rho=7; a very large rho tends to the logsnr grid (ds.grids.logsnr)",
        error=GridError)
    t0, t1 = _ends(schedule, t_start, t_end)
    s0, s1 = float(schedule.sigma_bar(t0)), float(schedule.sigma_bar(t1))
    widest = max(abs(math.log(s0)), abs(math.log(s1)))
    if widest / rho > 700:  # σ̄^(1/ρ) would overflow a float64
        raise GridError(f"grid 'karras': rho={rho!r} is too small for σ̄ in [{s1:.4g}, {s0:.4g}] (σ̄^(1/ρ) overflows); "
                        f"use rho >= {widest / 700:.3g} (EDM uses 7)")
    ramp = torch.linspace(0.0, 1.0, steps + 1, dtype=F64)
    sb = (s0 ** (1 / rho) + ramp * (s1 ** (1 / rho) - s0 ** (1 / rho))) ** rho
    return _finish(schedule, schedule.t_from_sigma_bar(sb), t0, t1, "karras")


def custom(schedule: Schedule, t: Tensor | list[float]) -> Grid:
    """A user-given sequence of times, validated (strictly monotone, finite, inside the schedule)."""
    return Grid(schedule, times_tensor(t), "custom")


GRIDS: dict[str, Callable[..., Grid]] = {
    "time": time,
    "logsnr": logsnr,
    "quadratic": quadratic,
    "karras": karras,
}
FIXED_KINDS = ("custom", "file")  # specs that carry their own times (and so their own step count)
# Spec names that a higher layer resolves (the bench's per-cell `tuned` and `learned`): name → (parameter keys, what to
# do elsewhere). Parsed here like any spec; building one here is an error that says what to do instead.
DEFERRED: dict[str, tuple[tuple[str, ...], str]] = {}
_ENDS = ("schedule", "steps", "t_start", "t_end")


# The built-in grids are pure functions of (schedule, steps, parameters): a spec's grid is built once per value,
# and later builds are copies sharing its memo (points, plans: functions of the grid's values); bounded by points
PURE = frozenset(GRIDS.values())
_BUILT = ValueCache(4096, weigh=len)
_PARAMS = ValueCache(256)  # a grid factory → the keyword parameters of its spec


def _copy(grid: Grid, name: str) -> Grid:
    """A Grid equal to `grid` (checked when it was built) with its own times and its own memo, started as a copy of
    `grid`'s points (functions of the times, which are equal; later entries are its own, and what they compute is
    shared by value: solver plans live in value caches)."""
    new = object.__new__(Grid)
    t_eval = None if grid.t_eval is None else grid.t_eval.clone()
    memo = {"points": grid.points} if grid.t_eval is None else {}
    for key, value in (("schedule", grid.schedule), ("t", grid.t.clone()), ("name", name), ("t_eval", t_eval),
                       ("_memo", memo)):
        object.__setattr__(new, key, value)
    new.__dict__["decreasing"] = grid.decreasing
    return new


def register(name: str, factory: Callable[..., Grid]) -> None:
    """Add a named grid: factory(schedule, steps, **params) → Grid; its keyword parameters become spec keys."""
    if not isinstance(name, str) or not name.isidentifier():
        raise GridError(f"a grid name must be an identifier such as 'my_grid', got {name!r}")
    if name in GRIDS or name in FIXED_KINDS or name in DEFERRED:
        raise GridError(f"a grid named {name!r} is already registered; pick another name")
    if not callable(factory):
        raise GridError(f"grid {name!r}: the factory must be callable as factory(schedule, steps, **params)")
    GRIDS[name] = factory


def register_deferred(name: str, params: tuple[str, ...], elsewhere: str) -> None:
    """Let specs named `name` (with keys `params`) parse here while a higher layer builds them; building one
    anywhere else raises "grid SPEC <elsewhere>" (say what to do instead)."""
    if name in GRIDS or name in FIXED_KINDS or name in DEFERRED:
        raise GridError(f"a grid named {name!r} is already registered; pick another name")
    DEFERRED[name] = (tuple(params), elsewhere)


def grid_params(name: str) -> list[str]:
    """The keyword parameters a named grid takes in a spec (e.g. ['rho'] for karras)."""
    factory = GRIDS[name]

    def read() -> list[str]:
        sig = inspect.signature(factory)
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p for p in sig.parameters if p not in _ENDS and sig.parameters[p].kind in kinds]
    return list(_PARAMS.get(factory, read))


@dataclass(frozen=True)
class GridSpec:
    """A parsed grid spec: a named grid with parameters, custom times, or a grid file."""

    text: str
    name: str
    params: tuple[tuple[str, Any], ...] = ()
    times: tuple[float, ...] | None = None
    path: str | None = None

    @property
    def fixed(self) -> bool:
        """True when the spec carries its own times (custom, file): the step count is not free."""
        return self.name in FIXED_KINDS

    def times_list(self) -> list[float]:
        """The spec's own times (custom, or read from the file)."""
        if self.times is not None:
            return list(self.times)
        return list(read_file(self.path or "")["times"])

    @property
    def steps(self) -> int | None:
        """Its step count when fixed, else None."""
        return len(self.times_list()) - 1 if self.fixed else None

    def fingerprint(self) -> str:
        """A hash of a grid file's content ('' for other specs, which their text fixes)."""
        if self.path is None:
            return ""
        return hashlib.sha256(Path(self.path).read_bytes()).hexdigest()[:16]

    def build(self, schedule: Schedule, steps: int | None = None, fingerprint: str | None = None) -> Grid:
        """The grid on `schedule`; `steps` is required for named grids and must match a fixed one's.

        A grid file is refused when made for another schedule, or for another problem `fingerprint` (if given).
        """
        check_schedule(schedule)
        if self.fixed:
            if self.path is not None:
                grid = load_file(self.path, schedule, fingerprint)
            else:
                grid = Grid(schedule, as_f64(list(self.times or ())), "custom")
            if steps is not None and steps != grid.steps:
                raise GridError(f"grid {self.text!r} has {grid.steps} steps but {steps} were asked for; "
                                f"drop the step count (or NFE), or give a grid of {steps} steps")
            object.__setattr__(grid, "name", self.text)
            return grid
        if self.name in DEFERRED:
            raise GridError(f"grid {self.text!r} {DEFERRED[self.name][1]}")
        if steps is None:
            raise GridError(f"grid {self.text!r} needs a step count; pass steps= or nfe=")
        factory = GRIDS[self.name]
        check_steps(steps)
        if factory not in PURE:
            grid = factory(schedule, steps, **dict(self.params))
            object.__setattr__(grid, "name", self.text)
            return grid
        key = (factory, schedule, steps, self.params)
        first = _BUILT.get(key, lambda: factory(schedule, steps, **dict(self.params)))
        return _copy(first, self.text)


def _spec_error(spec: str, problem: str, fix: str) -> GridError:
    return GridError(f"grid spec {spec!r}: {problem}; {fix}")


def _number(spec: str, text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise _spec_error(spec, f"{what} {text!r} is not a number",
                          "write numbers such as 5, 0.5 or 1e-3, e.g. 'karras:rho=5' or 'custom:1.0,0.5,0.001'",
                          ) from None


def parse(spec: str | GridSpec) -> GridSpec:
    """Parse 'name', 'name:key=value:…', 'custom:t0,t1,…' or 'file:path.json'; errors name the spec and the fix."""
    if isinstance(spec, GridSpec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise GridError(f"a grid spec is a non-empty string such as 'logsnr' or 'karras:rho=5', got {spec!r}")
    text = spec.strip()
    name, _, rest = text.partition(":")
    name = name.strip()
    if name == "custom":
        parts = [p.strip() for p in rest.split(",") if p.strip()]
        if len(parts) < 2:
            raise _spec_error(text, "a custom grid needs at least two times",
                              "list them from noisy to clean, e.g. 'custom:1.0,0.5,0.1,0.001'")
        return GridSpec(text, name, times=tuple(_number(text, p, "time") for p in parts))
    if name == "file":
        if not rest.strip():
            raise _spec_error(text, "no file named", "write 'file:path/to/grid.json'")
        return GridSpec(text, name, path=rest.strip())
    if name not in GRIDS and name not in DEFERRED:
        bench = f"; in the bench also {', '.join(sorted(DEFERRED))}" if DEFERRED else ""  # (per-cell specs)
        raise GridError(unknown_name("grid", name, list(GRIDS))
                        + f", or custom:T0,T1,… or file:GRID.json{bench} (in grid spec {text!r}); parameters "
                          f"follow ':', e.g. 'karras:rho=5'")
    accepted = list(DEFERRED[name][0]) if name in DEFERRED else grid_params(name)
    params: list[tuple[str, Any]] = []
    for pair in filter(None, (p.strip() for p in rest.split(":"))) if rest else ():
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            example = f"{name}:{accepted[0]}=5" if accepted else name
            raise _spec_error(text, f"{pair!r} must read KEY=VALUE", f"e.g. {example!r}")
        if key not in accepted:
            raise _spec_error(text, f"grid {name!r} takes no parameter {key!r}",
                              f"it takes: {', '.join(accepted) or 'none'}")
        if any(key == seen for seen, _ in params):
            raise _spec_error(text, f"parameter {key!r} is given twice", f"give each parameter once, e.g. "
                              f"'{name}:{key}={value.strip()}'")
        params.append((key, _number(text, value.strip(), f"the value of {key}")))
    return GridSpec(text, name, params=tuple(sorted(params)))


def build(spec: str | GridSpec | Grid, schedule: Schedule, steps: int | None = None,
          fingerprint: str | None = None) -> Grid:
    """A grid from a spec (or a Grid, checked against the schedule) on `schedule` with `steps` steps; a grid file
    made for another problem `fingerprint` (when given) is refused."""
    check_schedule(schedule)
    if isinstance(spec, Grid):
        if spec.schedule != schedule:
            raise GridError(f"the grid was built on {spec.schedule!r} but the solve uses {schedule!r}; "
                            f"build the grid from the same schedule")
        if steps is not None and steps != spec.steps:
            raise GridError(f"the grid has {spec.steps} steps but {steps} were asked for; drop steps= / nfe=")
        return spec
    return parse(spec).build(schedule, steps, fingerprint)


def make(name: str, schedule: Schedule, steps: int, **kwargs: float) -> Grid:
    """Build a grid by name or spec: time, logsnr, quadratic, karras (keyword parameters), or any spec."""
    if kwargs:
        if name not in GRIDS:
            raise GridError(unknown_name("grid", name, list(GRIDS)))
        check_schedule(schedule)
        check_steps(steps)
        return GRIDS[name](schedule, steps, **kwargs)
    return build(name, schedule, steps)


def _numbers(values: Any) -> bool:
    """A JSON list of numbers (true/false are not numbers here)."""
    return isinstance(values, list) and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in values)


def read_file(path: str | Path) -> dict[str, Any]:
    """The JSON object of a grid file, checked to hold 'times' (numbers) and 'schedule' (a config)."""
    data = read_json(path, "grid file", "write one with diffsolve.grids.save(grid, path)", error=GridError)
    return checked_data(data, path)


def checked_data(data: Any, path: str | Path) -> dict[str, Any]:
    """A grid file's JSON object (read from `path`, or carried elsewhere, e.g. in a scheduler's config), checked to
    hold 'times' (numbers) and 'schedule' (a config)."""
    times = data.get("times") if isinstance(data, dict) else None
    if not _numbers(times):
        raise GridError(f"grid file {str(path)!r} needs \"times\": a list of numbers; write it with "
                        f"diffsolve.grids.save")
    if not isinstance(data.get("schedule"), dict):
        raise GridError(f"grid file {str(path)!r} needs \"schedule\": the Schedule.to_config() the times are on")
    return data


def _described(config: Any) -> str:
    """A schedule config in a line: its schedule's repr (tables by their hash), else the JSON cut short."""
    try:
        return repr(from_config(config))
    except Exception:  # noqa: BLE001 — a config that builds no schedule is shown as it is
        text = json.dumps(config)
        return text if len(text) <= 160 else text[:160] + "…"


def check_file(data: dict[str, Any], path: str | Path, schedule: Schedule | None = None,
               fingerprint: str | None = None) -> None:
    """Refuse a grid file made for another schedule or (when both are known) another problem fingerprint, and a
    learned solver's file (its grid holds for its learned weights alone)."""
    if data.get("kind") == "learned":
        raise GridError(f"{str(path)!r} is a learned solver's file: its grid holds for its learned weights alone; pass "
                        f"solver='file:{path}' (it brings this grid), not grid='file:{path}'")
    if schedule is not None and data["schedule"] != schedule.to_config():
        raise GridError(
            f"grid file {str(path)!r} was made for schedule {_described(data['schedule'])} but the solve uses "
            f"{schedule!r}; use the same schedule or make the grid again on this one"
        )
    if fingerprint and data.get("fingerprint") not in (None, "", fingerprint):
        raise GridError(
            f"grid file {str(path)!r} was tuned for problem fingerprint {data['fingerprint']!r}, not {fingerprint!r} "
            f"(another model, or its weights changed); tune again for this model (diffsolve tune)"
        )


def load_file(path: str | Path, schedule: Schedule, fingerprint: str | None = None) -> Grid:
    """The grid stored in a file, refused when made for another schedule or another problem's fingerprint."""
    data = read_file(path)
    check_file(data, path, schedule, fingerprint)
    return Grid(schedule, as_f64(data["times"]), "file", eval_times_of(data, path))


def eval_times_of(data: dict[str, Any], path: str | Path) -> Tensor | None:
    """A grid file's optional "eval_times" (decoupled evaluation times), checked to be numbers."""
    te = data.get("eval_times")
    if te is None:
        return None
    if not _numbers(te):
        raise GridError(f"grid file {str(path)!r}: \"eval_times\" must be a list of numbers (one per time) or absent")
    return as_f64(te)


RESERVED_KEYS = ("times", "schedule", "eval_times")  # a grid file's own fields, written from the Grid alone


def save(grid: Grid, path: str | Path, **extra: Any) -> Path:
    """Write a grid file: its times, its schedule's config and any extra JSON fields (solver, nfe, fingerprint…)."""
    p = Path(path)
    if p.is_dir():
        raise GridError(f"cannot write the grid file {str(path)!r}: it is a folder; give a file name, e.g. "
                        f"{str(p / 'grid.json')!r}")
    text = json_text(file_data(grid, **extra), "the grid file's extra fields")
    write_text(p, text, "the grid file", GridError)
    return p


def json_text(data: Any, what: str) -> str:
    """`data` as indented JSON text (ending in a newline); a value JSON cannot hold is a GridError naming it."""
    try:
        return json.dumps(data, indent=1) + "\n"
    except (TypeError, ValueError) as e:
        raise GridError(f"{what} must be JSON values (numbers, strings, lists, dicts): {e}; "
                        f"convert them (e.g. float(x), x.tolist())") from None


def file_data(grid: Grid, **extra: Any) -> dict[str, Any]:
    """A grid file's JSON object: its times, its schedule's config, its evaluation times (when decoupled) and any
    extra fields (which must not be named like those: RESERVED_KEYS)."""
    clash = sorted(k for k in extra if k in RESERVED_KEYS)
    if clash:
        raise GridError(f"extra grid-file field(s) {', '.join(map(repr, clash))} would overwrite the grid's own; the "
                        f"keys {', '.join(RESERVED_KEYS)} are reserved (written from the Grid); drop or rename them")
    data = {"times": grid.t.tolist(), "schedule": grid.schedule.to_config(), **extra}
    if grid.t_eval is not None:
        data["eval_times"] = grid.t_eval.tolist()
    return data
