"""A user's diffsolve Model as a benchmark problem: x_T from the prior, reference by a float64 solve.

x_T ~ N(0, I) in VP coordinates (the prior of every VP schedule at t_max), flat (n, dim) with
dim = prod(shape); the network sees states reshaped to `shape`. The reference is the generic
float64 dopri8 solve in λ (Problem.reference), at `ref_tol` (default 1e-6). The fingerprint hashes
the Model (class, coordinates, schedule config, network weights, model kwargs); a network whose
weights cannot be hashed (a plain function) needs fingerprint=… (ds.bench.run, UserProblem; `diffsolve bench
--fingerprint`) — without it a warning is given and results are never reused across processes.
"""

from __future__ import annotations

import copy
import math
import uuid
import warnings

import torch
from torch import Tensor, nn

from ..errors import DiffsolveError
from ..models import Model
from ..schedules import Schedule
from .base import F64, Problem, Unhashable, copy_model, generator, retimed, state_hash, time_range
from .trained import FlatNet

_STREAM_X_T = 0


def model_shape(model: Model) -> tuple[int, ...] | None:
    """The event shape a Model declares (`model.shape`, or its network's `shape` / `event_shape`), else None."""
    for obj in (model, model.net):
        for attr in ("shape", "event_shape"):
            value = getattr(obj, attr, None)
            if isinstance(value, (tuple, list, torch.Size)) and all(isinstance(d, int) for d in value):
                return tuple(value)
    return None


class UserProblem(Problem):
    """A diffsolve Model (any prediction, coordinates and VP schedule) as a benchmark problem."""

    shape_fix = "give the shape of one sample the network takes (--shape 3,32,32 / shape=(3, 32, 32))"

    def __init__(self, model: Model, *, shape: tuple[int, ...] | list[int] | None = None, name: str = "model",
                 fingerprint: str | None = None, ref_tol: float = 1e-6, n: int = 64, description: str = ""):
        if not isinstance(model, Model):
            raise DiffsolveError(f"UserProblem wraps a diffsolve Model, got {type(model).__name__}; "
                                 f"wrap your network first, e.g. diffsolve.EpsModel(net, diffsolve.VPLinear())")
        shape = tuple(shape) if shape is not None else model_shape(model)
        if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
            raise DiffsolveError(
                f"the shape of one sample of model {name!r} is unknown (got {shape!r}); pass shape=(3, 32, 32) "
                f"(CLI: --shape 3,32,32) or give the model a `shape` attribute"
            )
        self._user, self.shape, self.name = model, shape, name
        self.dim = math.prod(shape)
        self.description = description or f"{type(model).__name__} on {model.schedule!r}, samples of shape {shape}"
        self.default_ref_tol, self.default_n = float(ref_tol), int(n)
        self._fixed_fp = fingerprint
        self._random_fp: str | None = None  # made once when the model cannot be hashed
        self._models: dict[torch.dtype, Model] = {}

    def fingerprint(self) -> str:
        """The explicit fingerprint, else a hash of the model as it is now (weights changed → new hash)."""
        if self._fixed_fp is not None:
            return f"UserProblem:{self._fixed_fp}"
        try:
            return "UserProblem:" + state_hash([self._user, list(self.shape)], self.name)
        except Unhashable as e:
            if self._random_fp is None:
                warnings.warn(
                    f"model {self.name!r} cannot be fingerprinted ({e} cannot be hashed), so its stored results "
                    f"and cached references will not be reused by another run; to reuse them pass fingerprint='…' "
                    f"(a string that changes whenever the network's numbers do) to ds.bench.run or "
                    f"diffsolve.problems.UserProblem (command line: diffsolve bench --fingerprint …)", stacklevel=2)
                self._random_fp = uuid.uuid4().hex
            return f"UserProblem:unhashable-{self._random_fp}"

    def default_schedule(self) -> Schedule:
        return self._user.schedule

    def _cast(self, dtype: torch.dtype) -> Model:
        """The user's model on flat states, its network (if an nn.Module) cast to dtype (built once)."""
        if dtype not in self._models:
            net = self._user.net
            if isinstance(net, nn.Module):
                params = list(net.parameters()) + list(net.buffers())
                if any(p.dtype != dtype and p.is_floating_point() for p in params):
                    net = copy.deepcopy(net).to(dtype)
            self._models[dtype] = copy_model(self._user, net=FlatNet(net, self.shape))
        return self._models[dtype]

    def model(self, schedule: Schedule | None = None, dtype: torch.dtype = F64) -> Model:
        base = copy_model(self._cast(dtype))
        return base if schedule is None else retimed(base, schedule, self.name)

    def x_T(self, n: int, seed: int, schedule: Schedule | None = None, t_start: float | None = None,
            dtype: torch.dtype = F64) -> Tensor:
        """n draws of the prior N(0, I) (VP coordinates), flat (n, dim)."""
        time_range(schedule or self.default_schedule(), t_start, None)
        return torch.randn(n, self.dim, generator=generator(seed, _STREAM_X_T), dtype=F64).to(dtype)

