"""A sharp Gaussian mixture with exact ε for the exponential-integrator tests (float64, any schedule).

x0 ~ Σ_k w_k N(μ_k, s_k² I)  ⇒  p_t = Σ_k w_k N(α μ_k, (α² s_k² + σ²) I),  ε = σ Σ_k r_k (x − α μ_k)/v_k.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffsolve.schedules import DiscreteDDPM, Schedule


class MixtureEps:
    """net(x, model_time) → exact ε of a Gaussian mixture; model_time follows the schedule's convention."""

    def __init__(self, schedule: Schedule, dim: int = 64, components: int = 8, scale: float = 0.05, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.schedule = schedule
        self.means = torch.randn(components, dim, generator=g, dtype=torch.float64)
        self.s2 = (scale * (0.5 + torch.rand(components, generator=g, dtype=torch.float64))) ** 2
        self.logw = torch.log_softmax(torch.randn(components, generator=g, dtype=torch.float64), 0)
        self.dim = dim

    def t_of(self, model_time: Tensor) -> Tensor:
        if isinstance(self.schedule, DiscreteDDPM):
            return (model_time.to(torch.float64) + 1.0) / self.schedule.num_train_steps
        return model_time.to(torch.float64)

    def __call__(self, x: Tensor, model_time: Tensor) -> Tensor:
        la = self.schedule.log_alpha(self.t_of(model_time))[:, None]  # (B, 1)
        alpha = torch.exp(la)
        sigma2 = -torch.expm1(2.0 * la)
        xd = x.to(torch.float64)
        v = alpha**2 * self.s2[None, :] + sigma2  # (B, K)
        mu = alpha[:, :, None] * self.means[None]  # (B, K, d)
        diff = xd[:, None, :] - mu
        logp = self.logw[None] - 0.5 * self.dim * torch.log(v) - 0.5 * (diff**2).sum(-1) / v
        r = torch.softmax(logp, dim=1)
        eps = torch.sqrt(sigma2) * ((r / v)[:, :, None] * diff).sum(1)
        return eps.to(x.dtype)

    def prior(self, batch: int, seed: int = 1) -> Tensor:
        """x_T ~ N(0, I) (VP coordinates)."""
        return torch.randn(batch, self.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
