"""Prediction wrappers: a network predicting ε, x̂0, v or the score becomes one view with ε and x̂0.

In VP coordinates x = α x0 + σ ε:  x0 = (x − σ ε)/α,  ε = (x − α x0)/σ,
v = α ε − σ x0 ⇒ ε = σ x + α v, x0 = α x − σ v;  score = ∇log p_t = −ε/σ.
Every network call is counted in `nfe`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .checks import Option
from .errors import ModelError
from .points import Point, filled, make_point, time_input_dtype
from .schedules import Schedule

Net = Callable[..., Tensor]
MAX_GUIDANCE = 1e4  # |CFG scale| at most: beyond it the guided ε is the difference (ε_c − ε_u) blown up past any use
_F32, _F64 = torch.float32, torch.float64


class FiniteChecks:
    """Deferred NaN/Inf checks: one device scalar per checked tensor (its sum: NaN and ±Inf survive a
    sum), each with the time and what it was (the input state or a network output); read in one host sync.
    """

    def __init__(self, skip: str = "pass check_finite=False to the model to skip") -> None:
        self.skip = skip  # the last clause of a network-output error: how to go without the check
        self._sums: list[Tensor] = []
        self._labels: list[tuple[str, float]] = []
        self._calls_read = 0  # network calls whose checks a passing raise_if_bad already read (and forgot)

    def __len__(self) -> int:
        return len(self._sums)

    @property
    def sums(self) -> list[Tensor]:
        """The recorded device scalars, oldest first (a copy of the list)."""
        return list(self._sums)

    def record(self, value: Tensor, t: float, what: str = "output") -> None:
        """Queue a check of `value` at time t; `what` is "output" (a network call), "input" (the state before any
        call) or "state" (the solver's state after the loop)."""
        self._sums.append(value.sum(dtype=_F64 if value.dtype is _F64 else _F32))
        self._labels.append((what, t))

    def since(self, n: int) -> list[tuple[Tensor, str, float]]:
        """The checks recorded after the first n, as (sum, what, t) records for `extend`."""
        return [(s, w, t) for s, (w, t) in zip(self._sums[n:], self._labels[n:])]

    def extend(self, records: list[tuple[Tensor, str, float]]) -> None:
        """Append records taken from `since` (e.g. replayed by a CUDA graph)."""
        for s, w, t in records:
            self._sums.append(s)
            self._labels.append((w, t))

    def clear(self) -> None:
        self._forget()
        self._calls_read = 0

    def _forget(self) -> None:
        self._sums.clear()
        self._labels.clear()

    def truncate(self, n: int) -> None:
        """Forget the checks recorded after the first n."""
        del self._sums[n:]
        del self._labels[n:]

    def raise_if_bad(self) -> None:
        """One host sync: raise a ModelError naming the first non-finite check, then forget them all. Passing checks
        are forgotten too, their calls still counted in a later message (an adaptive solver checks every call)."""
        if not self._sums:
            return
        stacked = torch.stack(self._sums).detach()  # (a differentiable solve's sums carry a graph)
        ok = None
        if not math.isfinite(float(stacked.sum())):  # a finite total can only come from finite sums
            ok = torch.isfinite(stacked)  # the total is not finite: NaN/Inf somewhere, or finite sums overflowing it
        if ok is None or bool(ok.all()):
            self._calls_read += sum(1 for w, _ in self._labels if w == "output")
            self._forget()
            return
        first = int((~ok).nonzero()[0, 0])
        calls = self._calls_read + sum(1 for w, _ in self._labels[: first + 1] if w == "output")
        what, t = self._labels[first]
        huge = self._huge_before(first) if what == "output" else None
        self.clear()
        if what == "input":
            raise ModelError(
                f"the input state at t = {t:.6g} holds NaN or Inf (before any network call); "
                f"check x_T (e.g. torch.isfinite(x_T).all()) and whatever produced it"
            )
        if what == "state":
            raise ModelError(
                f"the solver's state at t = {t:.6g} holds NaN or Inf after {calls} network call(s) whose outputs "
                f"were all finite: the step arithmetic overflowed (outputs too large for the state's dtype, e.g. a "
                f"network returning ~1e307, or a step too long for the solver); check the network's output scale "
                f"and its prediction type, or use more steps"
            )
        if huge is not None:  # the previous output was finite but near overflow: the state it made overflowed
            raise ModelError(
                f"the network returned NaN or Inf at network call {calls} (t = {t:.6g}), after call {calls - 1} "
                f"returned finite outputs summing to {huge:.3g}: the step arithmetic overflowed the state's dtype "
                f"(outputs too large, e.g. a network returning ~1e307) and the network was fed NaN/Inf; check the "
                f"network's output scale and its prediction type"
            )
        raise ModelError(
            f"the network returned NaN or Inf (its sum is not finite) at network call {calls} "
            f"(t = {t:.6g}), its earlier outputs finite; check the network and its dtype "
            f"(float16 overflows above 65504: keep the state in float32 with Model(..., net_dtype=torch.float16)), "
            f"the time range (t_end too close to 0 divides by a tiny σ) and the input scale; {self.skip}"
        )


    def _huge_before(self, first: int) -> float | None:
        """The sum of the network output recorded before check `first` when it lies within 1e-10 of its dtype's
        overflow (a state made from it likely overflowed), else None; read on the error path only."""
        earlier = [i for i, (w, _) in enumerate(self._labels[:first]) if w == "output"]
        if not earlier:
            return None
        value = self._sums[earlier[-1]].detach()
        big = float(value.abs())
        return big if big > 1e-10 * torch.finfo(value.dtype).max else None


@dataclass
class CallRecord:
    """Network calls set aside by `Model.set_aside`: how many, and their finiteness checks (sum, what, t)."""

    nfe: int = 0
    checks: list[tuple[Tensor, str, float]] = field(default_factory=list)


class Model:
    """Base wrapper: call the network, count the call, convert its output to ε or x̂0.

    coords="vp": the network sees x in VP coordinates (x_t = α x0 + σ ε), as DDPM-style nets do.
    coords="ve": the network sees x̄ = x/α (x̄ = x0 + σ̄ ε), as EDM/k-diffusion denoisers do; users
    then also pass and receive states in x̄ coordinates.
    """

    prediction: str = ""

    def __init__(
        self,
        net: Net,
        schedule: Schedule,
        *,
        coords: str = "vp",
        time_input: Callable[[Tensor], Tensor] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        check_finite: bool = True,
        time_scale: float = 1.0,
        net_dtype: torch.dtype | None = None,
    ):
        if coords not in ("vp", "ve"):
            raise ModelError(f"coords must be 'vp' or 've', got {coords!r}")
        if time_input is not None and not callable(time_input):
            raise ModelError(f"time_input must be a function of the float64 times (batch,) -> the network's time "
                             f"input, or None, got {time_input!r}; e.g. time_input=lambda t: t * 999")
        if model_kwargs is not None and not (isinstance(model_kwargs, Mapping) and all(
                isinstance(k, str) for k in model_kwargs)):
            raise ModelError(f"model_kwargs must be a dict of the network's keyword arguments (name -> value) or "
                             f"None, got {model_kwargs!r}; e.g. model_kwargs={{'cond': labels}}")
        if not isinstance(check_finite, bool):
            raise ModelError(f"check_finite must be True or False, got {check_finite!r}")
        if not callable(net):
            raise ModelError(f"net must be callable as net(x, t) -> tensor, got {type(net).__name__}")
        if not isinstance(schedule, Schedule):
            raise ModelError(f"schedule must be a diffsolve Schedule (e.g. VPLinear(), Flow()), got {schedule!r}")
        if isinstance(time_scale, bool) or not isinstance(time_scale, (int, float)) or not (
                math.isfinite(time_scale) and time_scale > 0):
            raise ModelError(f"time_scale must be a finite number > 0, got {time_scale!r} (diffusers flow nets: 1000)")
        if net_dtype is not None and not (isinstance(net_dtype, torch.dtype) and net_dtype.is_floating_point):
            raise ModelError(f"net_dtype must be a floating torch dtype such as torch.float16, got {net_dtype!r}")
        self.net = net
        self.schedule = schedule
        self.coords = coords
        self.time_input_fn = time_input
        self.model_kwargs = dict(model_kwargs or {})
        self.check_finite = check_finite
        self.time_scale = float(time_scale)
        self.net_dtype = net_dtype
        self._fitting_shapes: set[tuple[int, ...]] = set()  # trailing state shapes the network has accepted
        self.nfe = 0
        self.finite_checks = FiniteChecks()
        self.graph_cache: Any = None  # diffsolve.graphs' captures (a ValueCache), made on the first cuda_graph solve

    # ---- the one network call ---------------------------------------------------------
    def _time_arg(self, x: Tensor, p: Point) -> Tensor:
        if self.time_input_fn is not None:
            return self.time_input_fn(filled(p.t, x.shape[0], x.device, torch.float64))
        ti = p.time_input(x.shape[0], x.device, time_input_dtype(x.dtype))
        return ti if self.time_scale == 1.0 else ti * self.time_scale

    def _call(self, x: Tensor, p: Point, kwargs: dict[str, Any] | None = None) -> Tensor:
        """Run the network on VP-coordinate x at point p (in net_dtype when set); its raw output in x's dtype."""
        x_in = x if self.coords == "vp" else x * (1.0 / p.alpha)
        if self.net_dtype is not None:
            x_in = x_in.to(self.net_dtype)
        shape = x.shape
        if shape[1:] in self._fitting_shapes:  # torch.Size hashes and compares as the tuple of its sizes
            out = self.net(x_in, self._time_arg(x_in, p), **(self.model_kwargs if kwargs is None else kwargs))
        else:
            out = self._first_call(x_in, p, kwargs)
        self.nfe += 1
        if not isinstance(out, Tensor) or out.shape != shape or not out.is_floating_point():
            got = (tuple(out.shape) if out.shape != x.shape else f"dtype {out.dtype}") if isinstance(out, Tensor) \
                else type(out).__name__
            unbatched = isinstance(out, Tensor) and tuple(out.shape[1:]) == tuple(shape) and out.shape[0] == 1
            raise ModelError(
                f"the network returned {got} for an input of shape {tuple(x.shape)}; it must return a "
                f"floating-point tensor of the input's shape (wrap it so that it returns only the prediction)"
                + (f"; the state has no batch dimension: pass x[None] (shape {(1, *shape)})" if unbatched else "")
            )
        if self.check_finite:
            self.finite_checks.record(out, p.t)  # one reduction per call, read once after the loop
        return out if out.dtype == x.dtype else out.to(x.dtype)

    def _first_call(self, x_in: Tensor, p: Point, kwargs: dict[str, Any] | None) -> Tensor:
        """The first call with a new trailing state shape: an error inside the network names both shapes."""
        t_in = self._time_arg(x_in, p)
        try:
            out = self.net(x_in, t_in, **(self.model_kwargs if kwargs is None else kwargs))
        except (RuntimeError, ValueError, IndexError, TypeError) as e:
            expected = getattr(self.net, "data_shape", None)
            raise ModelError(
                f"the network failed on its first call with a state of shape {tuple(x_in.shape)} and a time "
                f"input of shape {tuple(t_in.shape)}"
                + (f" (the network's data shape is {tuple(expected)}, batch first)" if expected else "")
                + f": {type(e).__name__}: {e}. Check that the state's trailing shape is the one the network was "
                f"built for, and its keyword arguments"
            ) from e
        if isinstance(out, Tensor) and out.shape == x_in.shape:
            self._fitting_shapes.add(tuple(x_in.shape[1:]))
        return out

    # ---- views ---------------------------------------------------------------------------
    def _to_eps(self, out: Tensor, x: Tensor, p: Point) -> Tensor:
        raise NotImplementedError

    def _to_x0(self, out: Tensor, x: Tensor, p: Point) -> Tensor:
        raise NotImplementedError

    def eps_at(self, x: Tensor, p: Point) -> Tensor:
        """ε_θ(x, t) for VP-coordinate x at a prepared point (one network call)."""
        return self._to_eps(self._call(x, p), x, p)

    def x0_at(self, x: Tensor, p: Point) -> Tensor:
        """x̂0(x, t) for VP-coordinate x at a prepared point (one network call)."""
        return self._to_x0(self._call(x, p), x, p)

    def eps(self, x: Tensor, t: float | Tensor) -> Tensor:
        """ε_θ(x, t), x in VP coordinates, t a scalar time (convenience; solvers use eps_at)."""
        return self.eps_at(x, make_point(self.schedule, t))

    def x0(self, x: Tensor, t: float | Tensor) -> Tensor:
        """x̂0(x, t), x in VP coordinates, t a scalar time."""
        return self.x0_at(x, make_point(self.schedule, t))

    def score(self, x: Tensor, t: float | Tensor) -> Tensor:
        """∇log p_t(x) = −ε/σ."""
        p = make_point(self.schedule, t)
        return self.eps_at(x, p) * (-1.0 / p.sigma)

    # ---- coordinates -----------------------------------------------------------------------
    def to_vp(self, x: Tensor, p: Point) -> Tensor:
        """User coordinates → VP coordinates."""
        return x if self.coords == "vp" else x * p.alpha

    def from_vp(self, x: Tensor, p: Point) -> Tensor:
        """VP coordinates → user coordinates."""
        return x if self.coords == "vp" else x * (1.0 / p.alpha)

    # ---- bookkeeping ---------------------------------------------------------------------
    @contextmanager
    def set_aside(self) -> Iterator[CallRecord]:
        """Network calls made inside the block are not counted and their finiteness checks are not queued: the
        record yielded holds them afterwards (a CUDA graph's warm-up is dropped, its capture replayed)."""
        nfe, checks = self.nfe, len(self.finite_checks)
        record = CallRecord()
        try:
            yield record
        finally:
            record.nfe, record.checks = self.nfe - nfe, self.finite_checks.since(checks)
            self.nfe = nfe
            self.finite_checks.truncate(checks)

    def replay(self, record: CallRecord) -> None:
        """Count a record's network calls again and queue its checks (a replay runs them without Python)."""
        self.nfe += record.nfe
        self.finite_checks.extend(record.checks)

    def reset(self) -> None:
        """Zero the NFE counter and forget pending finiteness checks."""
        self.nfe = 0
        self.finite_checks.clear()

    def raise_if_not_finite(self) -> None:
        """One host sync: raise if the input state or any network output checked since the last clear held NaN/Inf."""
        self.finite_checks.raise_if_bad()

    def check_input(self, x: Tensor) -> None:
        """Raise if x cannot be fed to the network: not a batch of floats (check_state), or not on its device/dtype."""
        check_state(x)
        expected = getattr(self.net, "data_shape", None)
        if expected is not None and not _fits(tuple(x.shape[1:]), tuple(expected)):
            single = _fits(tuple(x.shape), tuple(expected))  # one sample without its batch dimension
            raise ModelError(
                f"the state has shape {tuple(x.shape)} but the network takes states of shape (batch, "
                f"{', '.join('any' if d is None else str(d) for d in expected)}); "
                + (f"add the batch dimension: x[None] (shape {(1, *x.shape)})" if single else "reshape x_T to fit")
            )
        params = getattr(self.net, "parameters", None)
        if params is None:
            return
        first = next(iter(params()), None)
        if first is None:
            return
        if first.device != x.device:
            raise ModelError(
                f"the state is on {x.device} but the network's parameters are on {first.device}; "
                f"move one of them, e.g. x_T.to('{first.device}')"
            )
        if torch.is_floating_point(first) and first.dtype != (self.net_dtype or x.dtype):
            held = f"the state has dtype {x.dtype}" if self.net_dtype is None else f"net_dtype is {self.net_dtype}"
            raise ModelError(
                f"{held} but the network's parameters have dtype {first.dtype}; cast one of them "
                f"(x_T.to({first.dtype}) or net.to({self.net_dtype or x.dtype})), or keep the state in {x.dtype} "
                f"and pass net_dtype={first.dtype} to the model (mixed precision)"
            )


def add_scaled(x: Tensor, y: Tensor, c: float | Tensor) -> Tensor:
    """x + c·y: fused for a float c; for a 0-d tensor c (a differentiable point, diffsolve.points) out of place."""
    return x + y * c if isinstance(c, Tensor) else torch.add(x, y, alpha=c)


def scaled(x: Tensor, c: float | Tensor) -> Tensor:
    """x·c, in place for a float c (x a fresh temporary), out of place for a 0-d tensor c (its gradient kept)."""
    return x * c if isinstance(c, Tensor) else x.mul_(c)


def check_state(x: Any) -> None:
    """Raise unless x is a floating-point tensor with a batch dimension of at least one sample."""
    if not isinstance(x, Tensor) or not torch.is_floating_point(x):
        raise ModelError(
            f"the state must be a floating-point tensor, got {type(x).__name__}"
            + (f" of dtype {x.dtype}" if isinstance(x, Tensor) else "")
            + "; convert it with torch.as_tensor(x, dtype=torch.float32)"
        )
    if x.ndim < 1 or x.shape[0] < 1:
        raise ModelError(
            f"the state must have a batch dimension of at least one sample, got shape {tuple(x.shape)}"
            + ("; use x[None] for a single sample" if x.ndim == 0 or x.shape[0] != 0 else "; draw n >= 1 samples")
        )
    if x.device.type == "meta":
        raise ModelError("the state is on the 'meta' device (no data); create it on 'cpu' or 'cuda'")


def _fits(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    """shape matches expected, where None in expected matches any size."""
    return len(shape) == len(expected) and all(e is None or e == d for d, e in zip(shape, expected))


def x0_of_eps(x: Tensor, eps: Tensor, p: Point) -> Tensor:
    """x̂0 = (x − σ ε)/α at p, for VP-coordinate x."""
    return scaled(add_scaled(x, eps, -p.sigma), 1.0 / p.alpha)


class EpsModel(Model):
    """Wrap net(x, t) → ε."""

    prediction = "eps"

    def _to_eps(self, out: Tensor, x: Tensor, p: Point) -> Tensor:
        return out

    def _to_x0(self, out: Tensor, x: Tensor, p: Point) -> Tensor:
        return x0_of_eps(x, out, p)


class X0Model(Model):
    """Wrap net(x, t) → x̂0 (a denoiser)."""

    prediction = "x0"

    def _to_eps(self, out: Tensor, x: Tensor, p: Point) -> Tensor:
        return scaled(add_scaled(x, out, -p.alpha), 1.0 / p.sigma)

    def _to_x0(self, out: Tensor, x: Tensor, p: Point) -> Tensor:
        return out


class VModel(Model):
    """Wrap net(x, t) → v = α ε − σ x0."""

    prediction = "v"

    def _to_eps(self, out: Tensor, x: Tensor, p: Point) -> Tensor:
        return add_scaled(out * p.alpha, x, p.sigma)

    def _to_x0(self, out: Tensor, x: Tensor, p: Point) -> Tensor:
        return add_scaled(x * p.alpha, out, -p.sigma)


class ScoreModel(Model):
    """Wrap net(x, t) → ∇log p_t(x)."""

    prediction = "score"

    def _to_eps(self, out: Tensor, x: Tensor, p: Point) -> Tensor:
        return out * (-p.sigma)

    def _to_x0(self, out: Tensor, x: Tensor, p: Point) -> Tensor:
        # x0 = (x − σ ε)/α = (x + σ² s)/α
        return scaled(add_scaled(x, out, p.sigma * p.sigma), 1.0 / p.alpha)


class FlowModel(Model):
    """Wrap net(x, τ) → the flow velocity v = dx/dτ = α' x0 + σ' ε (' = d/dτ in the network's time τ).

    Rectified flow (`Flow`, τ = σ): v = ε − x0. With D = α σ' − σ α' (= α + σ = 1 for the rectified flow):
    x0 = (σ' x − σ v)/D and ε = (α v − α' x)/D. Not VModel's VP "v-prediction" v = α ε − σ x0.
    """

    prediction = "velocity"

    def __init__(self, net: Net, schedule: Schedule, **kwargs: Any):
        super().__init__(net, schedule, **kwargs)
        if self.coords != "vp":
            raise ModelError("a velocity network sees the path's own x (coords='vp'); drop coords='ve'")

    def _to_eps(self, out: Tensor, x: Tensor, p: Point) -> Tensor:
        d = p.alpha * p.d_sigma - p.sigma * p.d_alpha
        return add_scaled(out * (p.alpha / d), x, -p.d_alpha / d)

    def _to_x0(self, out: Tensor, x: Tensor, p: Point) -> Tensor:
        d = p.alpha * p.d_sigma - p.sigma * p.d_alpha
        return add_scaled(x * (p.d_sigma / d), out, -p.sigma / d)

    def velocity(self, x: Tensor, t: float | Tensor) -> Tensor:
        """v(x, t), the network's own output (one call)."""
        return self._call(x, make_point(self.schedule, t))


PREDICTIONS: dict[str, type[Model]] = {
    "eps": EpsModel, "x0": X0Model, "v": VModel, "score": ScoreModel, "velocity": FlowModel,
}


def wrap(net: Net, schedule: Schedule, prediction: str = "eps", **kwargs: Any) -> Model:
    """Wrap a network by the name of what it predicts: eps, x0, v (VP v-prediction), score or velocity (flow)."""
    if prediction not in PREDICTIONS:
        raise ModelError(
            f"unknown prediction type {prediction!r}; valid ones are {', '.join(PREDICTIONS)} "
            f"(diffusers calls x0 'sample', v 'v_prediction', and a flow-matching model's output 'velocity')"
        )
    return PREDICTIONS[prediction](net, schedule, **kwargs)


class CFG(Model):
    """Classifier-free guidance in one batched call: ε = ε_u + w (ε_c − ε_u).

    The inner model's network is called once on the doubled batch [x, x] with the conditioning
    keyword `cond_key` set to cat([cond, uncond]); that batched call counts as one NFE.
    """

    def __init__(self, model: Model, cond: Tensor, uncond: Tensor, scale: float, cond_key: str = "cond"):
        if not isinstance(model, Model):
            raise ModelError(f"CFG wraps a diffsolve Model, got {type(model).__name__}; wrap the network first")
        scale = Option("the guidance scale", "float", 1.0, "1 = no guidance; usual values lie in 1 to 20",
                       low=-MAX_GUIDANCE, high=MAX_GUIDANCE).check(scale, owner="CFG", fix="pass e.g. scale=7.5",
                                                                    error=ModelError)
        if not (isinstance(cond, Tensor) and isinstance(uncond, Tensor)) or cond.shape != uncond.shape:
            shapes = [tuple(c.shape) if isinstance(c, Tensor) else type(c).__name__ for c in (cond, uncond)]
            raise ModelError(
                f"cond and uncond must be tensors of one shape (one row per sample), got {shapes[0]} and "
                f"{shapes[1]}; repeat the unconditional embedding to the batch, e.g. uncond.expand_as(cond)"
            )
        super().__init__(model.net, model.schedule, coords=model.coords, time_input=model.time_input_fn,
                         check_finite=model.check_finite, time_scale=model.time_scale, net_dtype=model.net_dtype)
        self.inner, self.scale, self.cond_key = model, float(scale), cond_key
        self.prediction = model.prediction
        self.model_kwargs = dict(model.model_kwargs)
        self.model_kwargs[cond_key] = torch.cat([cond, uncond])

    def _guided(self, x: Tensor, p: Point, view: str) -> Tensor:
        batch = self.model_kwargs[self.cond_key].shape[0] // 2
        if x.shape[0] != batch:
            raise ModelError(
                f"the state has batch {x.shape[0]} but CFG's cond/uncond have {batch} rows; give one "
                f"conditioning row per sample (cond of shape ({x.shape[0]}, ...))"
            )
        x2 = torch.cat([x, x])
        out = self._call(x2, p)
        convert = self.inner._to_eps if view == "eps" else self.inner._to_x0
        both = convert(out, x2, p)
        cond, uncond = both.chunk(2)
        return torch.add(uncond, cond - uncond, alpha=self.scale)

    def eps_at(self, x: Tensor, p: Point) -> Tensor:
        return self._guided(x, p, "eps")

    def x0_at(self, x: Tensor, p: Point) -> Tensor:
        return self._guided(x, p, "x0")
