"""Benchmark problems of networks trained by `diffsolve train`: the shipped `toy-2d` (MLP, ring of 8
Gaussians) and `digits-8x8` (tiny UNet, sklearn digits), or any checkpoint file that command wrote.

States are flat (n, dim) VP-coordinate tensors; the network sees them reshaped to its own shape.
The reference is the generic float64 dopri8 solve of the network's own ODE (Problem.reference);
its error is estimated by re-solving at a tighter tolerance (Problem.reference_error).
For another VP schedule S the network is fed the training time with the same log-SNR,
t_train(λ_S(t)), which is exact for a VP model (p_t depends on t only through λ).
The fingerprint hashes the checkpoint's weights, architecture, config and schedule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import nets
from ..errors import DiffsolveError
from ..models import EpsModel, Model
from ..schedules import Schedule
from .base import F64, Problem, generator, retimed, state_hash, time_range

_STREAM_X_T = 0
TASK_SHAPES = {"toy-2d": (2,), "digits-8x8": (1, 8, 8)}
DESCRIPTIONS = {"toy-2d": "MLP eps-network trained on a ring of 8 Gaussians (radius 1.5, std 0.15)",
                "digits-8x8": "tiny UNet eps-network trained on sklearn's 8x8 digits (scaled to [-1, 1])"}


class FlatNet(nn.Module):
    """net(x, t) on flat (B, dim) states for a network of event shape `shape`."""

    def __init__(self, net: Any, shape: tuple[int, ...]):
        super().__init__()
        self.net, self.shape = net, shape

    def forward(self, x: Tensor, t: Tensor, **kwargs: Any) -> Tensor:
        return self.net(x.reshape(x.shape[0], *self.shape), t, **kwargs).reshape(x.shape[0], -1)


class TrainedProblem(Problem):
    """A checkpoint written by `diffsolve train` (shipped or the user's) as a benchmark problem."""

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DiffsolveError(f"no checkpoint file {str(path)!r}; give a path written by `diffsolve train`")
        try:
            ckpt = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 — any unreadable file gets the same clear message
            raise DiffsolveError(f"{str(path)!r} is not a checkpoint written by `diffsolve train`: {e}") from None
        if not isinstance(ckpt, dict) or not {"arch", "config", "schedule", "state_dict"} <= set(ckpt):
            raise DiffsolveError(f"{str(path)!r} is not a checkpoint written by `diffsolve train` (it needs the keys "
                                 f"arch, config, schedule and state_dict); wrap other networks in a diffsolve Model")
        self.task = str(ckpt.get("name", ""))
        if self.task not in TASK_SHAPES:
            raise DiffsolveError(f"checkpoint {str(path)!r} was trained on task {self.task!r}; "
                                 f"known tasks: {', '.join(TASK_SHAPES)}")
        self.name = name or str(path)
        self.shape = TASK_SHAPES[self.task]
        self.description = DESCRIPTIONS[self.task] + ("" if name in TASK_SHAPES else f" ({path})")
        self.dim = int(torch.tensor(self.shape).prod())
        self.has_exact_samples = self.task == "toy-2d"
        if self.task == "digits-8x8":  # a UNet in the loop: fewer samples and a looser reference
            self.default_n, self.default_ref_tol = 32, 1e-6
        self._fingerprint = "TrainedProblem:" + state_hash(
            {k: ckpt[k] for k in ("arch", "config", "schedule", "state_dict")} | {"prediction": ckpt.get("prediction")},
            "checkpoint")
        self._models: dict[torch.dtype, EpsModel] = {}

    @classmethod
    def pretrained(cls, name: str) -> TrainedProblem:
        """A shipped checkpoint by name (toy-2d, digits-8x8)."""
        return cls(nets.checkpoint_path(name), name=name)

    def fingerprint(self) -> str:
        return self._fingerprint

    def _trained(self, dtype: torch.dtype) -> EpsModel:
        if dtype not in self._models:
            self._models[dtype] = nets.load_checkpoint(self.path, dtype=dtype)[0]
        return self._models[dtype]

    def default_schedule(self) -> Schedule:
        return self._trained(F64).schedule

    def model(self, schedule: Schedule | None = None, dtype: torch.dtype = F64) -> Model:
        trained = self._trained(dtype)
        flat = EpsModel(FlatNet(trained.net, self.shape), trained.schedule)
        return flat if schedule is None else retimed(flat, schedule, self.name)

    def _data(self, n: int, g: torch.Generator) -> Tensor:
        """n data points (float64, flat): the ring's law, or dequantized training digits."""
        if self.task == "toy-2d":
            return nets.toy_2d(n, int(torch.randint(2**62, (1,), generator=g))).to(F64)
        levels = nets.digits_levels("train")
        idx = torch.randint(levels.shape[0], (n,), generator=g)
        return nets.dequantize(levels[idx].to(F64), g).reshape(n, -1)

    def samples(self, n: int, seed: int, schedule: Schedule | None = None, t: float | None = None,
                stream: int = 1) -> Tensor:
        """x = α_t x0 + σ_t z with x0 from the data law (the ring is known exactly; digits are data)."""
        g = generator(seed, stream)
        x0 = self._data(n, g)
        if t is None:
            return x0
        schedule = schedule or self.default_schedule()
        a, s = float(schedule.alpha(float(t))), float(schedule.sigma(float(t)))
        return a * x0 + s * torch.randn(x0.shape, generator=g, dtype=F64)

    def x_T(self, n: int, seed: int, schedule: Schedule | None = None, t_start: float | None = None,
            dtype: torch.dtype = F64) -> Tensor:
        """n draws of the data's marginal at t_start (≈ N(0, I) at t_max)."""
        schedule = schedule or self.default_schedule()
        t0, _ = time_range(schedule, t_start, None)
        return self.samples(n, seed, schedule, t0, stream=_STREAM_X_T).to(dtype)
