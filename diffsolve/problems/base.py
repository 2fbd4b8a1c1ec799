"""The benchmark problem interface: a model, starting noise x_T and a float64 reference solution.

A problem fixes the data (analytic or learned), hands out a diffsolve Model for any VP schedule,
draws x_T at the start time and computes the reference end state x(t_end) of the sampling ODE
from the same x_T, in VP coordinates. Problems with a known data law also give exact samples of
every marginal p_t, which the benchmark uses for the sliced Wasserstein distance.
"""

from __future__ import annotations

import copy
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..dynamics import ode
from ..errors import DiffsolveError, ModelError, ScheduleError
from ..models import CFG, FiniteChecks, Model
from ..points import Point
from ..schedules import Schedule, VPLinear

F64 = torch.float64


class Unhashable(DiffsolveError):
    """A value whose numbers cannot be hashed (e.g. a plain function): the caller must name a fingerprint."""


def _feed(h: Any, value: Any, where: str) -> None:
    """Feed a canonical byte form of `value` into hash h: tensors by dtype, shape and bytes; modules by
    class and state_dict; schedules by config; diffsolve Models by class, options, schedule and network."""
    if isinstance(value, Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(value.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, nn.Module):
        h.update(f"M{type(value).__module__}.{type(value).__qualname__}".encode())
        _feed(h, dict(value.state_dict()), where)
    elif isinstance(value, Schedule):
        h.update(json.dumps(value.to_config(), sort_keys=True).encode())
    elif isinstance(value, Model):
        h.update(f"D{type(value).__qualname__}|{value.coords}|{value.prediction}".encode())
        if value.time_input_fn is not None:
            raise Unhashable(f"{where}.time_input (a function)")
        for k in ("schedule", "net", "model_kwargs"):
            _feed(h, getattr(value, k), f"{where}.{k}")
        if isinstance(value, CFG):  # classifier-free guidance: its scale and inner model
            _feed(h, [value.scale, value.inner], f"{where}.inner")
    elif isinstance(value, dict):
        h.update(b"{")
        for k in sorted(value, key=str):
            h.update(f"{k!s}:".encode())
            _feed(h, value[k], f"{where}[{k!r}]")
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for i, v in enumerate(value):
            _feed(h, v, f"{where}[{i}]")
        h.update(b"]")
    elif value is None or isinstance(value, (bool, int, float, str, torch.dtype)):
        h.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise Unhashable(f"{where} (a {type(value).__name__})")


def state_hash(value: Any, where: str = "value") -> str:
    """sha256 (32 hex digits) of what fixes a value's numbers: tensors, module weights, schedule configs,
    plain data. Raises Unhashable naming the part that cannot be hashed (e.g. a plain function)."""
    h = hashlib.sha256()
    _feed(h, value, where)
    return h.hexdigest()[:32]


def generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for (seed, stream): independent streams for x_T, exact sets, projections."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DiffsolveError(f"seed must be a non-negative integer, got {seed!r}")
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)


def time_range(schedule: Schedule, t_start: float | None, t_end: float | None) -> tuple[float, float]:
    """(t_start, t_end), defaulting to the whole schedule (t_max → t_min), checked to lie inside it."""
    t0 = schedule.t_max if t_start is None else float(t_start)
    t1 = schedule.t_min if t_end is None else float(t_end)
    schedule.check_times(torch.tensor([t0, t1], dtype=F64), "problem time range")
    return t0, t1


class Problem(ABC):
    """A benchmark problem: dimension, a model for a schedule, x_T draws and a reference solve."""

    name: str = ""
    dim: int = 0
    description: str = ""
    has_exact_samples: bool = False
    default_ref_tol: float = 1e-10  # rtol = atol of the float64 reference solve
    default_n: int = 256  # samples per cell when a suite gives none
    shape: tuple[int, ...] | None = None  # one sample's shape as the network sees it, where not (dim,) (images)
    shape_fix = "check the model"  # what to do when the network refuses the problem's states (check_first_call)

    def fingerprint(self) -> str:
        """A hash of what fixes this problem's numbers (stored cells and cached references are keyed by it).

        The default hashes the class and every public attribute but the name and description (tensors
        by value, networks by weights, schedules by config); override it when an attribute cannot be
        hashed (a plain function) or when the numbers depend on something else.
        """
        params = {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in ("name", "description")}
        try:
            return f"{type(self).__qualname__}:{state_hash(params, type(self).__qualname__)}"
        except Unhashable as e:
            raise DiffsolveError(
                f"problem {self.name or type(self).__qualname__!r} cannot be fingerprinted: {e} cannot be hashed; "
                f"override {type(self).__qualname__}.fingerprint() to return a string that changes whenever "
                f"its numbers do"
            ) from None

    def default_schedule(self) -> Schedule:
        """The schedule used when none is given (continuous linear VP)."""
        return VPLinear()

    @abstractmethod
    def model(self, schedule: Schedule | None = None, dtype: torch.dtype = F64) -> Model:
        """A diffsolve Model (fresh NFE counter) of this problem's denoiser on `schedule`."""

    @abstractmethod
    def x_T(
        self, n: int, seed: int, schedule: Schedule | None = None, t_start: float | None = None,
        dtype: torch.dtype = F64,
    ) -> Tensor:
        """n starting states at t_start (default schedule.t_max), VP coordinates, shape (n, dim)."""

    def reference(
        self, x_T: Tensor, schedule: Schedule | None = None, t_start: float | None = None,
        t_end: float | None = None, rtol: float = 1e-10, atol: float = 1e-10,
        on_eval: Callable[[Point], None] | None = None,
    ) -> Tensor:
        """x(t_end) of the sampling ODE from x_T, by a float64 dopri8 solve of the model itself in λ.

        Generic fallback for problems without a closed-form denoiser (trained networks); its own
        error is estimated by `reference_error`. on_eval(point) is called at every network call
        (a progress bar); closed-form references may ignore it.
        """
        from ..grids import custom
        from ..solve import solve

        schedule = schedule or self.default_schedule()
        t0, t1 = time_range(schedule, t_start, t_end)
        model = self.model(schedule, dtype=F64)
        if on_eval is not None:
            model = Watched(model, on_eval)
        sol = solve(ode(model, "lambda"), x_T.to(F64), custom(schedule, [t0, t1]), "dopri8", rtol=rtol, atol=atol)
        return sol.x

    def reference_path(
        self, x_T: Tensor, schedule: Schedule, times: Tensor | list[float], rtol: float = 1e-10, atol: float = 1e-10
    ) -> Tensor:
        """The reference flow from x_T at times[0] through every later time, VP coordinates, shape (T, n, …):
        a float64 dopri8 solve of the model in λ, its trajectory at `times` (override with a closed form)."""
        from ..grids import custom
        from ..solve import solve

        model = self.model(schedule, dtype=F64)
        sol = solve(ode(model, "lambda"), x_T.to(F64), custom(schedule, times), "dopri8", trajectory=True,
                    rtol=rtol, atol=atol)
        assert sol.trajectory is not None
        return sol.trajectory

    def exact_moments(self, schedule: Schedule, t: float) -> tuple[Tensor, Tensor] | None:
        """Mean and covariance of p_t in VP coordinates, flat, float64, where the data law is known (else None)."""
        return None

    def reference_error(
        self, x_T: Tensor, schedule: Schedule | None = None, t_start: float | None = None,
        t_end: float | None = None, rtol: float = 1e-10, atol: float = 1e-10, factor: float = 10.0,
    ) -> float:
        """RMSE per dimension between the reference at (rtol, atol) and at tolerances `factor` times tighter."""
        a = self.reference(x_T, schedule, t_start, t_end, rtol, atol)
        b = self.reference(x_T, schedule, t_start, t_end, rtol / factor, atol / factor)
        return float(torch.sqrt(torch.mean((a - b) ** 2)))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample as the network sees it: `shape` where a problem sets one (images), else (dim,).
        States in the bench are flat (n, dim)."""
        return tuple(self.shape) if self.shape else (self.dim,)

    def check_first_call(self, label: str, schedule: Schedule, dtype: torch.dtype, x_T: Tensor,
                         model: Model | None = None) -> None:
        """Run the model once on (at most) two rows of x_T at t_max, before any work that needs it: the network must
        take states of the problem's shape and return a finite tensor of that shape. One ModelError names the
        problem, the shape the network was given and what went wrong (`model`: default self.model(schedule, dtype))."""
        x = x_T[:2].to(dtype)
        given = (x.shape[0], *self.sample_shape)
        try:
            out = (model or self.model(schedule, dtype=dtype)).eps(x, schedule.t_max)
        except Exception as e:  # noqa: BLE001 — the user's network: any exception, named
            where = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
            raise ModelError(f"problem {label!r}: the model's first call, on a batch of shape {given} (dtype {dtype}) "
                             f"at t = {schedule.t_max:g}, failed — {type(e).__name__}{where}: {e}. Nothing ran; "
                             f"{self.shape_fix}") from e
        if not bool(torch.isfinite(out).all()):
            raise ModelError(f"problem {label!r}: the model returned NaN or Inf on its first call (a batch of shape "
                             f"{given}, dtype {dtype}, at t = {schedule.t_max:g}); nothing ran; check the network")

    def component_of(self, x: Tensor, schedule: Schedule, t: float) -> Tensor | None:
        """Each sample's most likely mode (mixture component) under p_t, a (n,) integer tensor, for problems that
        know their modes; None for the others (the default). x in VP coordinates, flat (n, dim)."""
        return None

    def samples(
        self, n: int, seed: int, schedule: Schedule | None = None, t: float | None = None, stream: int = 1
    ) -> Tensor:
        """n exact samples of the marginal p_t (VP coordinates); only where has_exact_samples."""
        raise DiffsolveError(
            f"problem {self.name!r} has no exact samples (its data law is not known in closed form); "
            f"use a problem with has_exact_samples = True, e.g. 'gmm-64', for sample-quality metrics"
        )

    def __repr__(self) -> str:
        return f"<problem {self.name}: dim {self.dim}>"


class Watched(Model):
    """A model that calls on_eval(point) before each evaluation of the model it wraps (progress bars)."""

    def __init__(self, model: Model, on_eval: Callable[[Point], None]):
        super().__init__(model.net, model.schedule, coords=model.coords, time_input=model.time_input_fn,
                         check_finite=model.check_finite)
        self.inner, self.on_eval, self.prediction = model, on_eval, model.prediction

    def _counted(self, view: Callable[[Tensor, Point], Tensor], x: Tensor, p: Point) -> Tensor:
        self.on_eval(p)
        before = self.inner.nfe
        out = view(x, p)
        self.nfe += self.inner.nfe - before
        return out

    def eps_at(self, x: Tensor, p: Point) -> Tensor:
        return self._counted(self.inner.eps_at, x, p)

    def x0_at(self, x: Tensor, p: Point) -> Tensor:
        return self._counted(self.inner.x0_at, x, p)

    def raise_if_not_finite(self) -> None:
        self.inner.raise_if_not_finite()


def check_lambda_range(schedule: Schedule, trained_on: Schedule, what: str) -> None:
    """Raise unless `schedule`'s log-SNR range lies inside the one `what` was trained on."""
    lo, hi = trained_on.lambda_min, trained_on.lambda_max
    if schedule.lambda_min < lo - 1e-9 or schedule.lambda_max > hi + 1e-9:
        raise ScheduleError(
            f"{schedule!r} spans log-SNR λ ∈ [{schedule.lambda_min:.4g}, {schedule.lambda_max:.4g}] but "
            f"{what} was trained on λ ∈ [{lo:.4g}, {hi:.4g}]; narrow its t range or use the default"
        )


def retimed(model: Model, schedule: Schedule, what: str) -> Model:
    """`model` (trained on its own VP schedule S₀) on another VP schedule S: the network is fed the S₀ time
    with the same log-SNR, t₀(λ_S(t)) — exact for a VP model, whose p_t depends on t only through λ."""
    own = model.schedule
    if schedule == own:
        return model
    check_lambda_range(schedule, own, what)
    inner = model.time_input_fn

    def own_time(t: Tensor) -> Tensor:
        t0 = own.t_from_lambda(schedule.lam(t))
        return inner(t0) if inner is not None else own.model_time(t0)

    return copy_model(model, schedule=schedule, time_input_fn=own_time)


def copy_model(model: Model, **changes: Any) -> Model:
    """A shallow copy of a diffsolve Model with some attributes replaced and a fresh NFE counter."""
    new = copy.copy(model)
    for k, v in changes.items():
        setattr(new, k, v)
    new.nfe, new.finite_checks, new.graph_cache = 0, FiniteChecks(), None
    return new
