"""What a solver integrates, declared once and checked by `solve()` against the dynamics it is given.

Runge–Kutta and torchdiffeq methods integrate any ODE in its own variable (a model-backed one from noise to data
when a Runge–Kutta method ends with a step to σ = 0); the exponential integrators integrate a model-backed
semi-linear ODE stepped in λ (they read the model and the schedule, not the drift); the exponential samplers of the
reverse SDE need a model-backed semi-linear reverse-time SDE with additive noise; torchsde's methods need an SDE, some
of them with additive noise.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dynamics import Dynamics


@dataclass(frozen=True)
class Integrates:
    """A declaration: stochastic or not, the variables stepped in (None: any), and what the dynamics must carry."""

    what: str  # in words, e.g. "a model-backed semi-linear ODE stepped in λ"
    fix: str  # how to build such dynamics
    stochastic: bool = False
    variables: tuple[str, ...] | None = None
    model: bool = False  # reads the dynamics' model (ε / x̂0) directly
    semilinear: bool = False  # solves the linear part of the diffusion ODE/SDE exactly (Dynamics.semilinear)
    additive_noise: bool = False  # the diffusion does not depend on the state (Dynamics.additive_noise)
    reverse: bool = False  # runs from noise to data (Dynamics.time_reversed)

    def unmet(self, dynamics: Dynamics) -> list[str]:
        """What `dynamics` lacks for this declaration (empty when it fits)."""
        out = []
        if self.variables is not None and dynamics.variable not in self.variables:
            out.append(f"its variable is {dynamics.variable!r}, not {' or '.join(map(repr, self.variables))}")
        if self.model and dynamics.model is None:
            out.append("it has no model")
        if self.semilinear and not dynamics.semilinear:
            out.append("it does not declare the semi-linear diffusion form (Dynamics.semilinear)")
        if self.additive_noise and not dynamics.additive_noise:
            out.append("its noise is not additive (it does not declare additive_noise)")
        if self.reverse and not dynamics.time_reversed:
            out.append("it runs forward in time (data → noise)")
        return out


ANY_ODE = Integrates("any ODE, in its own variable", "pass an ODE such as diffsolve.ode(model, 'sigma')")
MODEL_ODE = Integrates(
    "a model-backed ODE from noise to data, in its own variable (the step to σ = 0 returns the model's x̂0)",
    "pass diffsolve.ode(model, 'sigma'), or drop to_zero", model=True, reverse=True,
)
EXPONENTIAL_ODE = Integrates(
    "a model-backed semi-linear ODE stepped in λ (its linear part exactly)",
    "pass diffsolve.ode(model, 'lambda'): these solvers step in λ whatever the dynamics' variable says",
    variables=("lambda",), model=True, semilinear=True,
)
EXPONENTIAL_SDE = Integrates(
    "the reverse VP-SDE of a model (model-backed, semi-linear, additive noise, noise → data)",
    "pass the reverse VP-SDE diffsolve.VPSDE(schedule).reverse(model)",
    stochastic=True, variables=("t",), model=True, semilinear=True, additive_noise=True, reverse=True,
)
ANY_SDE = Integrates("any SDE", "pass an SDE such as diffsolve.VPSDE(schedule).reverse(model)", stochastic=True,
                     variables=("t",))
ADDITIVE_SDE = Integrates(
    "an SDE with additive noise (diffusion independent of the state)",
    "use 'euler_maruyama' for state-dependent noise", stochastic=True, variables=("t",), additive_noise=True,
)
