"""diffusers adapter: a UNet2DModel (or any diffusers UNet or transformer) + its scheduler → a diffsolve Model.

DDPM-family schedulers: the table ᾱ_n (n = 0…N−1) becomes a `DiscreteDDPM` schedule (t_n = (n+1)/N,
log α piecewise linear in t); the UNet is called at the continuous step N·t − 1, which is its own integer
timestep n on the knots. prediction_type maps epsilon → ε, sample → x̂0, v_prediction → v.
Flow-matching schedulers (FlowMatchEulerDiscreteScheduler): the path x = (1 − σ) x0 + σ ε becomes a `Flow`
schedule with the scheduler's shift, on t ∈ [1/N, 1 − 1/N]; the network is called at diffusers' timestep
N·σ and predicts the velocity v = ε − x0 (`FlowModel`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from . import grids
from .errors import ModelError, ScheduleError
from .models import FlowModel, Model, wrap
from .schedules import F64, DiscreteDDPM, Flow, Schedule

PREDICTION_TYPES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}


def is_diffusers_model(net: Any) -> bool:
    """Whether `net` is a diffusers model (a diffusers.ModelMixin; diffusers is loaded if the user made one)."""
    import sys

    diffusers = sys.modules.get("diffusers")
    return diffusers is not None and isinstance(net, diffusers.ModelMixin)


class DiffusersNet(nn.Module):
    """net(x, t) = unet(x, timestep=t, **kwargs).sample for a diffusers model (keeping the first C channels when
    the UNet also predicts a variance, out_channels = 2C); a plain module is called as net(x, t, **kwargs)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet
        self.by_keyword = is_diffusers_model(unet)

    def forward(self, x: Tensor, t: Tensor, **kwargs: Any) -> Tensor:
        if not self.by_keyword:  # the user's own network: net(x, t) → prediction (or a tuple led by it)
            out = self.unet(x, t, **kwargs)
            return out[0] if isinstance(out, (tuple, list)) else out
        # by keyword: UNets take (sample, timestep, …), transformers (hidden_states, encoder_hidden_states, …)
        out = self.unet(x, timestep=t, return_dict=False, **kwargs)[0]
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


def _trained_betas(values: Any) -> Tensor:
    """A config's trained_betas as float32, refused (naming them) unless a 1-D table of at least 2 numbers in (0, 1)."""
    try:
        betas = torch.as_tensor(values, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        betas = None
    if betas is None or betas.ndim != 1 or betas.numel() < 2 or not bool(((betas > 0) & (betas < 1)).all()):
        shown = repr(values)
        if len(shown) > 80:  # a long table: its start, and its range where it has numbers
            span = f" (min {float(betas.min()):.4g}, max {float(betas.max()):.4g})" if betas is not None and \
                betas.numel() else ""
            shown = f"{shown[:60]}…{span}"
        raise ScheduleError(f"the config's trained_betas must be a 1-D list of at least 2 numbers, each β_n in (0, 1) "
                            f"(ᾱ_n = Π(1 − β_k)), got {shown}; pass the betas the network was trained with (DDPM's "
                            f"run from 1e-4 to 0.02), or leave trained_betas out to use beta_schedule")
    return betas


def betas_from_config(cfg: Mapping[str, Any]) -> Tensor:
    """β_n of a diffusers config (trained_betas, or linear / scaled_linear / squaredcos_cap_v2), float32
    like diffusers computes them."""
    n = int(cfg.get("num_train_timesteps", 1000))
    if cfg.get("trained_betas") is not None:
        return _trained_betas(cfg["trained_betas"])
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


def is_flow_scheduler(scheduler: Any) -> bool:
    """Whether a diffusers scheduler (object or config dict) is a flow-matching one: its class says so, or its
    config holds a FlowMatch `shift` (a live scheduler's `.config` has no "_class_name")."""
    name = type(scheduler).__name__ if not isinstance(scheduler, Mapping) else ""
    cfg = _config(scheduler)
    return ("FlowMatch" in name or "FlowMatch" in str(cfg.get("_class_name", ""))
            or (cfg.get("shift") is not None and "use_dynamic_shifting" in cfg))


def flow_schedule_from_diffusers(scheduler: Any, shift: float | None = None) -> Flow:
    """Flow(t_min=1/N, t_max=1 − 1/N, shift) of a FlowMatch scheduler: σ(1/N) is its σ_min; t = 1 (pure noise,
    α = 0) is left out. A resolution-dependent shift (use_dynamic_shifting) must be passed as `shift`."""
    cfg = _config(scheduler)
    n = int(cfg.get("num_train_timesteps", 1000))
    if shift is None:
        if cfg.get("use_dynamic_shifting", False):
            raise ModelError(
                "this scheduler shifts its times by image resolution (use_dynamic_shifting=True); pass the "
                "shift for your resolution: shift=math.exp(mu) (time_shift_type 'exponential') or shift=mu ('linear')"
            )
        shift = float(cfg.get("shift", 1.0))
    return Flow(t_min=1.0 / n, t_max=1.0 - 1.0 / n, shift=shift)


def schedule_from_diffusers(scheduler: Any) -> DiscreteDDPM:
    """The scheduler's ᾱ table (its own float32 values, widened to float64) as a DiscreteDDPM."""
    acp = getattr(scheduler, "alphas_cumprod", None)
    if acp is None:
        acp = torch.cumprod(1.0 - betas_from_config(_config(scheduler)), 0)
    return DiscreteDDPM(alphas_cumprod=torch.as_tensor(acp).detach().cpu().to(F64))


def from_diffusers(unet: nn.Module, scheduler: Any, *, prediction_type: str | None = None,
                   shift: float | None = None, timestep_scale: float | None = None, **model_kwargs: Any) -> Model:
    """A diffsolve Model of a diffusers UNet (or transformer) and its scheduler (object or config dict).

    model_kwargs (class_labels=…, encoder_hidden_states=…) are passed to every network call. For a
    flow-matching scheduler: `shift` overrides the scheduler's (needed with dynamic shifting), and the
    network's timestep is timestep_scale·σ (default num_train_timesteps, as SD3 pipelines call it; Flux
    pipelines pass σ itself: timestep_scale=1).
    """
    if not isinstance(unet, nn.Module):
        raise ModelError(f"unet must be a torch.nn.Module (a diffusers UNet), got {type(unet).__name__}")
    cfg = _config(scheduler)
    if is_flow_scheduler(scheduler):
        return diffusers_model(unet, flow_schedule_from_diffusers(scheduler, shift), cfg,
                               prediction_type=prediction_type, timestep_scale=timestep_scale, **model_kwargs)
    if shift is not None or timestep_scale is not None:
        raise ModelError("shift= and timestep_scale= apply to flow-matching schedulers only; drop them")
    return diffusers_model(unet, schedule_from_diffusers(scheduler), cfg, prediction_type=prediction_type,
                           **model_kwargs)


def diffusers_model(unet: nn.Module, schedule: Schedule, cfg: Mapping[str, Any], *, prediction_type: str | None = None,
                    timestep_scale: float | None = None, **model_kwargs: Any) -> Model:
    """The Model of a diffusers network on `schedule`: on a Flow, the velocity at timestep_scale·σ (default the
    config's num_train_timesteps); else the config's (or the given) prediction_type at the schedule's model time."""
    if isinstance(schedule, Flow):
        if prediction_type not in (None, "velocity", "flow_prediction"):
            raise ModelError(
                f"a flow-matching scheduler's model predicts the velocity v = ε − x0, got "
                f"prediction_type={prediction_type!r}; drop prediction_type"
            )
        scale = float(cfg.get("num_train_timesteps", 1000)) if timestep_scale is None else timestep_scale
        return FlowModel(DiffusersNet(unet), schedule, time_scale=scale, model_kwargs=model_kwargs)
    kind = prediction_type or cfg.get("prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise ModelError(
            f"unsupported prediction_type {kind!r}; diffusers' types that diffsolve takes are "
            f"{', '.join(PREDICTION_TYPES)}"
        )
    return wrap(DiffusersNet(unet), schedule, PREDICTION_TYPES[kind], model_kwargs=model_kwargs)


def grid_from_sigmas(schedule: Flow, sigmas: Tensor | list[float]) -> grids.Grid:
    """A diffsolve grid at a FlowMatch scheduler's sigmas (descending, each in (0, 1)): t(σ̄ = σ/(1 − σ))."""
    sig = torch.as_tensor(sigmas).detach().cpu().to(F64)
    if not isinstance(schedule, Flow) or not bool(((sig > 0) & (sig < 1)).all()):
        raise ModelError(
            "grid_from_sigmas needs a Flow schedule and sigmas strictly inside (0, 1); drop diffusers' first "
            "σ = 1 (pure noise) and last σ = 0 (scheduler.sigmas[1:-1])"
        )
    return grids.custom(schedule, schedule.t_from_sigma_bar(sig / (1.0 - sig)))


def grid_from_timesteps(schedule: DiscreteDDPM, timesteps: Tensor | list[int]) -> grids.Grid:
    """A diffsolve grid at diffusers' integer timesteps n (descending): t_n = (n+1)/N."""
    steps = torch.as_tensor(timesteps).detach().cpu()
    return grids.custom(schedule, schedule.t_from_step(steps))
