"""diffusers adapter: a UNet2DModel (or any diffusers UNet) + its scheduler → a diffsolve Model.

The scheduler's table ᾱ_n (n = 0…N−1) becomes a `DiscreteDDPM` schedule (t_n = (n+1)/N, log α
piecewise linear in t); the UNet is called at the continuous step N·t − 1, which is its own integer
timestep n on the knots. prediction_type maps epsilon → ε, sample → x̂0, v_prediction → v.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from . import grids
from .errors import ModelError, ScheduleError
from .models import Model, wrap
from .schedules import F64, DiscreteDDPM

PREDICTION_TYPES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}


class DiffusersNet(nn.Module):
    """net(x, t) = unet(x, t, **kwargs).sample, keeping the first C channels when the UNet also
    predicts a variance (out_channels = 2C)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: Tensor, t: Tensor, **kwargs: Any) -> Tensor:
        out = self.unet(x, t, return_dict=False, **kwargs)[0]
        if out.ndim == x.ndim and out.shape[1] == 2 * x.shape[1]:
            out = out[:, : x.shape[1]]
        return out


def _config(scheduler: Any) -> Mapping[str, Any]:
    cfg = getattr(scheduler, "config", scheduler)
    if not isinstance(cfg, Mapping):
        raise ModelError(
            f"expected a diffusers scheduler or its config dict, got {type(scheduler).__name__}; "
            f"pass e.g. DDPMScheduler.from_pretrained(repo, subfolder='scheduler')"
        )
    return cfg


def betas_from_config(cfg: Mapping[str, Any]) -> Tensor:
    """β_n of a diffusers config (trained_betas, or linear / scaled_linear / squaredcos_cap_v2), float32
    like diffusers computes them."""
    n = int(cfg.get("num_train_timesteps", 1000))
    if cfg.get("trained_betas") is not None:
        return torch.as_tensor(cfg["trained_betas"], dtype=torch.float32)
    kind = cfg.get("beta_schedule", "linear")
    b0, b1 = float(cfg.get("beta_start", 1e-4)), float(cfg.get("beta_end", 0.02))
    if kind == "linear":
        return torch.linspace(b0, b1, n, dtype=torch.float32)
    if kind == "scaled_linear":
        return torch.linspace(b0**0.5, b1**0.5, n, dtype=torch.float32) ** 2
    if kind == "squaredcos_cap_v2":
        def abar(u: float) -> float:
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.tensor([min(1 - abar((i + 1) / n) / abar(i / n), 0.999) for i in range(n)],
                            dtype=torch.float32)
    raise ScheduleError(
        f"unsupported beta_schedule {kind!r}; pass the scheduler object itself (its alphas_cumprod is "
        f"used as is) or a config with trained_betas"
    )


def schedule_from_diffusers(scheduler: Any) -> DiscreteDDPM:
    """The scheduler's ᾱ table (its own float32 values, widened to float64) as a DiscreteDDPM."""
    acp = getattr(scheduler, "alphas_cumprod", None)
    if acp is None:
        acp = torch.cumprod(1.0 - betas_from_config(_config(scheduler)), 0)
    return DiscreteDDPM(alphas_cumprod=torch.as_tensor(acp).detach().cpu().to(F64))


def from_diffusers(unet: nn.Module, scheduler: Any, *, prediction_type: str | None = None,
                   **model_kwargs: Any) -> Model:
    """A diffsolve Model of a diffusers UNet and its scheduler (object or config dict).

    model_kwargs (class_labels=…, encoder_hidden_states=…) are passed to every UNet call.
    """
    if not isinstance(unet, nn.Module):
        raise ModelError(f"unet must be a torch.nn.Module (a diffusers UNet), got {type(unet).__name__}")
    cfg = _config(scheduler)
    kind = prediction_type or cfg.get("prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise ModelError(
            f"unsupported prediction_type {kind!r}; diffusers' types that diffsolve takes are "
            f"{', '.join(PREDICTION_TYPES)}"
        )
    return wrap(DiffusersNet(unet), schedule_from_diffusers(scheduler), PREDICTION_TYPES[kind],
                model_kwargs=model_kwargs)


def grid_from_timesteps(schedule: DiscreteDDPM, timesteps: Tensor | list[int]) -> grids.Grid:
    """A diffsolve grid at diffusers' integer timesteps n (descending): t_n = (n+1)/N."""
    steps = torch.as_tensor(timesteps).detach().cpu()
    return grids.custom(schedule, schedule.t_from_step(steps))
