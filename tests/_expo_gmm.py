"""A sharp Gaussian mixture with exact ε for the exponential-integrator tests (float64, any schedule).

x0 ~ Σ_k w_k N(μ_k, s_k² I)  ⇒  p_t = Σ_k w_k N(α μ_k, (α² s_k² + σ²) I),  ε = σ Σ_k r_k (x − α μ_k)/v_k;
the mixture and its ε are diffsolve.problems.GaussianMixture's, this file only draws its parameters and
feeds it the network's time convention.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffsolve.problems import GaussianMixture
from diffsolve.schedules import DiscreteDDPM, Schedule

F64 = torch.float64


class MixtureEps:
    """net(x, model_time) → exact ε of a Gaussian mixture; model_time follows the schedule's convention."""

    def __init__(self, schedule: Schedule, dim: int = 64, components: int = 8, scale: float = 0.05, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        means = torch.randn(components, dim, generator=g, dtype=F64)
        stds = scale * (0.5 + torch.rand(components, generator=g, dtype=F64))
        weights = torch.softmax(torch.randn(components, generator=g, dtype=F64), 0)
        self.mixture = GaussianMixture(weights, means, stds[:, None].expand(components, dim), name="expo-gmm")
        self.schedule, self.dim = schedule, dim

    def t_of(self, model_time: Tensor) -> Tensor:
        """The continuous t of a network input (DiscreteDDPM feeds the training step n = N t − 1)."""
        if isinstance(self.schedule, DiscreteDDPM):
            return self.schedule.t_from_step(model_time)
        return model_time.to(F64)

    def __call__(self, x: Tensor, model_time: Tensor) -> Tensor:
        t = self.t_of(model_time).reshape(-1)
        return self.mixture.eps(x, t, self.schedule).to(x.dtype)

    def prior(self, batch: int, seed: int = 1) -> Tensor:
        """x_T ~ N(0, I) (VP coordinates)."""
        return torch.randn(batch, self.dim, generator=torch.Generator().manual_seed(seed), dtype=F64)
