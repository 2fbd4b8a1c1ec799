"""Benchmark problems of networks trained by `diffsolve train`: the shipped `toy-2d` (MLP, ring of 8
Gaussians), `digits-8x8` (tiny UNet, sklearn digits), `toy-2d-flow` (the toy MLP as a velocity network on
the rectified flow), or any checkpoint file that command wrote.

States are flat (n, dim) VP-coordinate tensors; the network sees them reshaped to its own shape.
The reference is the generic float64 dopri8 solve of the network's own ODE (Problem.reference);
its error is estimated by re-solving at a tighter tolerance (Problem.reference_error).
For another schedule S the network is fed the training time with the same log-SNR, t_train(λ_S(t)),
which is exact (p_t depends on t only through λ once x is rescaled): between VP schedules x is the same;
otherwise x_train = x α_train/α_S and ε = (α v − α' x_train)/(α σ' − σ α') for a velocity network.
The fingerprint hashes the checkpoint's weights, architecture, config, schedule and prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import nets
from ..models import EpsModel, Model, wrap
from ..schedules import Schedule, VPSchedule
from .base import F64, Problem, check_lambda_range, generator, retimed, state_hash, time_range

_STREAM_X_T = 0
TASK_SHAPES = {"toy-2d": (2,), "toy-2d-flow": (2,), "digits-8x8": (1, 8, 8)}
DESCRIPTIONS = {"toy-2d": "MLP eps-network trained on a ring of 8 Gaussians (radius 1.5, std 0.15)",
                "toy-2d-flow": "MLP velocity network trained by flow matching on the rectified flow, ring of 8 "
                               "Gaussians (radius 1.5, std 0.15)",
                "digits-8x8": "tiny UNet eps-network trained on sklearn's 8x8 digits (scaled to [-1, 1])"}


class FlatNet(nn.Module):
    """net(x, t) on flat (B, dim) states for a network of event shape `shape`."""

    def __init__(self, net: Any, shape: tuple[int, ...]):
        super().__init__()
        self.net, self.shape = net, shape

    def forward(self, x: Tensor, t: Tensor, **kwargs: Any) -> Tensor:
        return self.net(x.reshape(x.shape[0], *self.shape), t, **kwargs).reshape(x.shape[0], -1)


class _ForeignPathNet(nn.Module):
    """ε(x, t) on schedule S of a network trained on another path: same λ, x rescaled by α_train/α_S (tensor
    arithmetic on the device, no host reads)."""

    def __init__(self, net: nn.Module, prediction: str, train: Schedule, target: Schedule):
        super().__init__()
        self.net, self.prediction, self.train, self.target = net, prediction, train, target

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t_tr = self.train.t_from_lambda(self.target.lam(t))
        col = (-1,) + (1,) * (x.ndim - 1)
        alpha = self.train.alpha(t_tr)
        x_tr = x * (alpha / self.target.alpha(t)).to(x.dtype).reshape(col)
        out = self.net(x_tr, self.train.model_time(t_tr).to(x.dtype if x.dtype == F64 else torch.float32))
        if self.prediction == "eps":
            return out
        d_alpha, d_sigma = self.train.velocity_coefficients(t_tr)
        det = alpha * d_sigma - self.train.sigma(t_tr) * d_alpha
        a, b = (alpha / det).to(x.dtype).reshape(col), (d_alpha / det).to(x.dtype).reshape(col)
        return out * a - x_tr * b


class TrainedProblem(Problem):
    """A checkpoint written by `diffsolve train` (shipped or the user's) as a benchmark problem."""

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        ckpt, _ = nets.open_checkpoint(self.path)  # every part checked: a wrong file is refused before any work
        self.task = str(ckpt["name"])
        self.name = name or str(path)
        self.shape = TASK_SHAPES[self.task]
        self.description = DESCRIPTIONS[self.task] + ("" if name in TASK_SHAPES else f" ({path})")
        self.dim = int(torch.tensor(self.shape).prod())
        self.has_exact_samples = self.task.startswith("toy-2d")
        if self.task == "digits-8x8":  # a UNet in the loop: fewer samples and a looser reference
            self.default_n, self.default_ref_tol = 32, 1e-6
        self._fingerprint = "TrainedProblem:" + state_hash(
            {k: ckpt[k] for k in ("arch", "config", "schedule", "state_dict")} | {"prediction": ckpt.get("prediction")},
            "checkpoint")
        self._models: dict[torch.dtype, Model] = {}
        self._dtype = next((v.dtype for v in ckpt["state_dict"].values() if isinstance(v, Tensor)
                            and v.is_floating_point()), torch.float32)

    @classmethod
    def pretrained(cls, name: str) -> TrainedProblem:
        """A shipped checkpoint by name (toy-2d, toy-2d-flow, digits-8x8)."""
        return cls(nets.checkpoint_path(name), name=name)

    def fingerprint(self) -> str:
        return self._fingerprint

    def network_dtype(self) -> torch.dtype:
        """The dtype of the checkpoint's weights."""
        return self._dtype

    def _trained(self, dtype: torch.dtype) -> Model:
        if dtype not in self._models:
            self._models[dtype] = nets.load_checkpoint(self.path, dtype=dtype)[0]
        return self._models[dtype]

    def default_schedule(self) -> Schedule:
        return self._trained(F64).schedule

    def model(self, schedule: Schedule | None = None, dtype: torch.dtype = F64) -> Model:
        trained = self._trained(dtype)
        train_sched = trained.schedule
        net = FlatNet(trained.net, self.shape)
        own = wrap(net, train_sched, trained.prediction)
        if schedule is None or schedule == train_sched:
            return own
        if trained.prediction == "eps" and isinstance(schedule, VPSchedule) and isinstance(train_sched, VPSchedule):
            return retimed(own, schedule, self.name)
        check_lambda_range(schedule, train_sched, self.name)
        return EpsModel(_ForeignPathNet(net, trained.prediction, train_sched, schedule), schedule,
                        time_input=lambda t: t)

    def _data(self, n: int, g: torch.Generator) -> Tensor:
        """n data points (float64, flat): the ring's law, or dequantized training digits."""
        if self.task.startswith("toy-2d"):
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
