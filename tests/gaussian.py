"""A one-Gaussian data distribution N(μ, s² I): exact ε and the closed-form PF-ODE solution, for tests."""

from __future__ import annotations

import torch
from torch import Tensor

import diffsolve as ds


class GaussianData:
    """Data N(mu, s² I). ε(x, t) = σ (x − α μ)/(α² s² + σ²); along the ODE (x̄ − μ)/√(s² + σ̄²) is constant."""

    def __init__(self, mu: float = 0.5, s: float = 0.3):
        self.mu, self.s2 = mu, s * s
        self.calls = 0

    def net(self, schedule: ds.Schedule):
        """A network net(x, t_in) → ε that needs the continuous t (pass time_input=identity)."""

        def net(x: Tensor, t: Tensor) -> Tensor:
            self.calls += 1
            t64 = t.to(torch.float64).reshape(-1, *([1] * (x.ndim - 1)))
            a, sg = schedule.alpha(t64), schedule.sigma(t64)
            return (sg * (x.to(torch.float64) - a * self.mu) / (a * a * self.s2 + sg * sg)).to(x.dtype)

        return net

    def model(self, schedule: ds.Schedule, cls: type[ds.Model] = ds.EpsModel) -> ds.Model:
        """The exact ε model, fed the continuous time t."""
        return cls(self.net(schedule), schedule, time_input=lambda t: t)

    def exact(self, x_T: Tensor, schedule: ds.Schedule, t_start: float, t_end: float) -> Tensor:
        """The ODE's exact solution at t_end from x_T (VP coordinates) at t_start."""
        a0, a1 = float(schedule.alpha(t_start)), float(schedule.alpha(t_end))
        sb0, sb1 = float(schedule.sigma_bar(t_start)), float(schedule.sigma_bar(t_end))
        xbar = x_T / a0
        ratio = ((self.s2 + sb1**2) / (self.s2 + sb0**2)) ** 0.5
        return (self.mu + (xbar - self.mu) * ratio) * a1
