"""Continuous dynamics of any Gaussian path x_t = α_t x0 + σ_t ε, as objects with a drift (and a diffusion).

With f = d log α/dt and g² = dσ²/dt − 2fσ² (VP: f = −½β, g² = β), and ∇log p_t = −ε/σ:
forward SDE:            dx = f x dt + g dW                        (state x, variable t)
reverse-time SDE:       dx = [f x − g² ∇log p_t] dt + g dW̄        (state x, variable t, t decreasing)
probability-flow ODE:   dx/dt = f x + g² ε_θ/(2σ)                (state x, variable t)
DDIM ODE in σ̄:          dx̄/dσ̄ = ε_θ(α x̄, t(σ̄))                   (state x̄ = x/α, any path)
DDIM ODE in λ:          dx̄/dλ = −e^{−λ} ε_θ                       (state x̄ = x/α)
DDIM ODE in t:          dx̄/dt = (dσ̄/dt) ε_θ = σ̄ g²/(2σ²) ε_θ     (state x̄ = x/α)
All of them are solved with `diffsolve.solve`; users pass and receive x in their model's coordinates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from .errors import DiffsolveError
from .models import Model
from .points import Point
from .schedules import Schedule, as_f64

VARIABLES = ("t", "sigma", "lambda")


def variable_of(schedule: Schedule, variable: str, t: Tensor) -> Tensor:
    """The integration variable s(t): t itself, σ̄_t or λ_t (float64)."""
    if variable == "t":
        return as_f64(t)
    if variable == "sigma":
        return schedule.sigma_bar(t)
    if variable == "lambda":
        return schedule.lam(t)
    raise DiffsolveError(f"unknown integration variable {variable!r}; valid ones are {', '.join(VARIABLES)}")


def time_of(schedule: Schedule, variable: str, s: Tensor) -> Tensor:
    """The inverse map t(s) of `variable_of` (float64)."""
    if variable == "t":
        return as_f64(s)
    if variable == "sigma":
        return schedule.t_from_sigma_bar(s)
    if variable == "lambda":
        return schedule.t_from_lambda(s)
    raise DiffsolveError(f"unknown integration variable {variable!r}; valid ones are {', '.join(VARIABLES)}")


class Dynamics(ABC):
    """dy = f(y, s) ds [+ g(y, s) dW_s] in an integration variable s ∈ {t, σ̄, λ} and a state y."""

    variable: str = "t"
    stochastic: bool = False
    time_reversed: bool = True  # integrated from noise (large t) to data (small t)
    additive_noise: bool = False  # SDEs whose diffusion g(s) does not depend on the state
    # The diffusion form exponential integrators need: the model's ε-/x̂0-prediction on the schedule's α, σ, with
    # a linear part in VP coordinates they solve exactly (they read the model and the schedule, not the drift).
    semilinear: bool = False
    decouples: bool = False  # drift_at can call the model at another time than the step's (decoupled grids)

    def __init__(self, schedule: Schedule, model: Model | None):
        self.schedule = schedule
        self.model = model

    def variable_of(self, t: Tensor) -> Tensor:
        """s(t) for this dynamics' integration variable."""
        return variable_of(self.schedule, self.variable, t)

    def time_of(self, s: Tensor) -> Tensor:
        """t(s), the inverse of variable_of."""
        return time_of(self.schedule, self.variable, s)

    def to_state(self, x: Tensor, p: Point) -> Tensor:
        """VP-coordinate x → the integration state y (identity unless overridden)."""
        return x

    def from_state(self, y: Tensor, p: Point) -> Tensor:
        """The integration state y → VP-coordinate x."""
        return y

    @abstractmethod
    def drift(self, y: Tensor, p: Point) -> Tensor:
        """f(y, s): dy/ds for ODEs, the drift for SDEs."""

    def drift_at(self, y: Tensor, p: Point, at: Point) -> Tensor:
        """f(y, s) at p with the network called at `at` (a grid's decoupled evaluation time); dynamics that declare
        `decouples` can, others only at p itself."""
        if at is not p:
            raise DiffsolveError(f"{self!r} calls its model at the step's own time only (it does not declare "
                                 f"`decouples`); use a grid without decoupled evaluation times")
        return self.drift(y, p)

    def diffusion(self, y: Tensor, p: Point) -> Tensor:
        """g(y, s), the diagonal diffusion coefficient (SDEs only)."""
        raise DiffsolveError(f"{type(self).__name__} is an ODE: it has no diffusion coefficient")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(variable={self.variable!r}, schedule={self.schedule!r})"


class ProbabilityFlowODE(Dynamics):
    """dx/dt = f x − ½g² ∇log p_t = f x + g² ε_θ(x, t) / (2σ_t), in the path's own coordinates x."""

    variable = "t"
    semilinear = True
    decouples = True

    def __init__(self, model: Model):
        super().__init__(model.schedule, model)

    def drift(self, y: Tensor, p: Point) -> Tensor:
        return self.drift_at(y, p, p)

    def drift_at(self, y: Tensor, p: Point, at: Point) -> Tensor:
        """f x + g² ε_θ(x, at)/(2σ), the coefficients at p."""
        eps = self.model.eps_at(y, at)
        return torch.add(eps * (0.5 * p.g2 / p.sigma), y, alpha=p.f)


class DDIMODE(Dynamics):
    """The DDIM ODE on x̄ = x/α: dx̄/dσ̄ = ε_θ(α x̄, t), written in σ̄, λ or t — the same ODE for every path.

    In λ it reads dx̄/dλ = −σ̄ ε_θ and in t dx̄/dt = (dσ̄/dt) ε_θ with dσ̄/dt = −σ̄ dλ/dt = σ̄ g²/(2σ²);
    one Euler step in σ̄ is DDIM (η = 0).
    """

    semilinear = True
    decouples = True

    def __init__(self, model: Model, variable: str = "sigma"):
        if variable not in VARIABLES:
            raise DiffsolveError(
                f"unknown integration variable {variable!r}; valid ones are {', '.join(VARIABLES)}"
            )
        super().__init__(model.schedule, model)
        self.variable = variable

    def to_state(self, x: Tensor, p: Point) -> Tensor:
        return x * (1.0 / p.alpha)

    def from_state(self, y: Tensor, p: Point) -> Tensor:
        return y * p.alpha

    def drift(self, y: Tensor, p: Point) -> Tensor:
        return self.drift_at(y, p, p)

    def drift_at(self, y: Tensor, p: Point, at: Point) -> Tensor:
        """ε_θ(α x̄, at) times dσ̄/ds, with α and dσ̄/ds at p."""
        eps = self.model.eps_at(y * p.alpha, at)
        if self.variable == "sigma":
            return eps
        if self.variable == "lambda":
            return eps * (-p.sigma_bar)
        return eps * (0.5 * p.sigma_bar * p.g2 / (p.sigma * p.sigma))


def ode(model: Model, variable: str = "sigma") -> Dynamics:
    """The sampling ODE in a named variable: t → probability-flow ODE in x; sigma/lambda → DDIM ODE in x̄."""
    if variable == "t":
        return ProbabilityFlowODE(model)
    return DDIMODE(model, variable)


class ForwardSDE(Dynamics):
    """Forward SDE dx = f(t) x dt + g(t) dW of the schedule's path; its marginals are N(α_t x_0, σ_t² I)
    (VP: dx = −½β x dt + √β dW)."""

    stochastic = True
    time_reversed = False
    additive_noise = True
    semilinear = True

    def __init__(self, schedule: Schedule):
        super().__init__(schedule, None)

    def drift(self, y: Tensor, p: Point) -> Tensor:
        return y * p.f

    def diffusion(self, y: Tensor, p: Point) -> Tensor:
        return torch.full_like(y, p.g2**0.5)

    def reverse(self, model: Model) -> ReverseSDE:
        """The reverse-time SDE driven by `model` (Anderson 1982)."""
        return ReverseSDE(model)


class ReverseSDE(Dynamics):
    """dx = [f x − g² ∇log p_t(x)] dt + g dW̄ = [f x + g² ε_θ/σ] dt + g dW̄, run with t decreasing."""

    stochastic = True
    additive_noise = True
    semilinear = True

    def __init__(self, model: Model):
        super().__init__(model.schedule, model)

    def drift(self, y: Tensor, p: Point) -> Tensor:
        eps = self.model.eps_at(y, p)
        return torch.add(eps * (p.g2 / p.sigma), y, alpha=p.f)

    def diffusion(self, y: Tensor, p: Point) -> Tensor:
        return torch.full_like(y, p.g2**0.5)


# The VP names: the same classes (a VP schedule gives f = −½β, g² = β).
VPSDE = ForwardSDE
ReverseVPSDE = ReverseSDE
