"""Data N(μ, s² I) in any dimension as the one-component GaussianMixture of diffsolve.problems, for tests.

The exact ε and the closed-form PF-ODE solution are the library's (`GaussianMixture.eps`, `.exact_flow`);
this adapter only adds a counter of network calls and builds the mixture for whatever dimension x has.
"""

from __future__ import annotations

import torch
from torch import Tensor

import diffsolve as ds
from diffsolve.problems import GaussianMixture

F64 = torch.float64


def gaussian(dim: int, mu: float | Tensor = 0.5, s: float | Tensor = 0.3) -> GaussianMixture:
    """N(μ, diag(s²)) in `dim` dimensions (μ and s scalars or (dim,) tensors), as a one-component mixture."""
    means = torch.as_tensor(mu, dtype=F64).expand(1, dim)
    stds = torch.as_tensor(s, dtype=F64).expand(1, dim)
    return GaussianMixture(torch.ones(1, dtype=F64), means, stds, name=f"gaussian-{dim}d")


class GaussianData:
    """Data N(mu, s² I): ε(x, t) = σ (x − α μ)/(α² s² + σ²); along the ODE (x̄ − μ)/√(s² + σ̄²) is constant."""

    def __init__(self, mu: float = 0.5, s: float = 0.3):
        self.mu, self.s = mu, s
        self.calls = 0
        self._mixtures: dict[int, GaussianMixture] = {}

    def mixture(self, dim: int) -> GaussianMixture:
        """The library's one-component mixture for `dim`-dimensional data (built once per dimension)."""
        if dim not in self._mixtures:
            self._mixtures[dim] = gaussian(dim, self.mu, self.s)
        return self._mixtures[dim]

    def net(self, schedule: ds.Schedule):
        """A network net(x, t_in) → ε that needs the continuous t (pass time_input=identity); counts its calls."""

        def net(x: Tensor, t: Tensor) -> Tensor:
            self.calls += 1
            flat = x.reshape(x.shape[0], -1)
            eps = self.mixture(flat.shape[1]).eps(flat, t.to(F64).reshape(-1), schedule)
            return eps.reshape(x.shape).to(x.dtype)

        return net

    def model(self, schedule: ds.Schedule, cls: type[ds.Model] = ds.EpsModel) -> ds.Model:
        """The exact ε model, fed the continuous time t."""
        return cls(self.net(schedule), schedule, time_input=lambda t: t)

    def exact(self, x_T: Tensor, schedule: ds.Schedule, t_start: float, t_end: float) -> Tensor:
        """The ODE's exact solution at t_end from x_T (VP coordinates) at t_start."""
        flat = x_T.reshape(x_T.shape[0], -1)
        out = self.mixture(flat.shape[1]).exact_flow(flat, schedule, t_start, t_end)
        return out.reshape(x_T.shape).to(x_T.dtype)
