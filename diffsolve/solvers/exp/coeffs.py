"""Step coefficients of exponential integrators in λ, computed in float64 before any loop.

In VP coordinates, over one step s → t with h = λ_t − λ_s, the ODE's linear part is solved exactly:
  noise form (m = ε_θ):  x_t = (α_t/α_s) x_s − σ_t Σ_k h^{k+1} φ_{k+1}(h)  m^{(k)}(λ_s)
  data form  (m = x̂_0):  x_t = (σ_t/σ_s) x_s + α_t Σ_k h^{k+1} φ_{k+1}(−h) m^{(k)}(λ_s)
i.e. x_t = a x_s + c Σ_k h^{k+1} φ_{k+1}(z) m^{(k)}, with (a, c, z) = (α_t/α_s, −σ_t, h) or (σ_t/σ_s, α_t, −h).
Every solver here is a choice of how the derivatives m^{(k)} are estimated from evaluations; each step
then reduces to x_t = a x_s + Σ_j w_j m_j, a linear combination with precomputed weights.
The formulas take Python floats (the plan of every solve) or 0-d float64 tensors (a differentiable plan, whose
weights are functions of the grid: diffsolve.solvers.exp.weighted); scalar.py dispatches exp/expm1/√.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import SolverError
from .phi import phi
from .scalar import Scalar

FORMS = ("noise", "data")


@dataclass(frozen=True)
class Node:
    """α, σ, λ at one time; σ = 0 (λ = +∞) is the clean end reached by a final step 'to zero'."""

    alpha: Scalar
    sigma: Scalar
    lam: Scalar

    @property
    def zero(self) -> bool:
        return bool(self.sigma == 0.0)


ZERO = Node(alpha=1.0, sigma=0.0, lam=math.inf)


@dataclass(frozen=True)
class Combo:
    """x_new = a·x + Σ_j w_j m_j (m_0 the newest model output, m_1 the one before, …); floats or 0-d tensors."""

    a: Scalar
    w: tuple[Scalar, ...]


def linear_part(form: str, s: Node, t: Node) -> tuple[Scalar, Scalar, Scalar, Scalar]:
    """(a, c, z, h) of the step s → t (t not the zero node)."""
    h = t.lam - s.lam
    if form == "noise":
        return t.alpha / s.alpha, -t.sigma, h, h
    return t.sigma / s.sigma, t.alpha, -h, h


def to_zero(form: str, s: Node) -> Combo:
    """The first-order step from s to σ = 0, the limit of DDIM: x̂0 = (x − σ_s ε)/α_s, or x̂0 itself."""
    if form == "noise":
        return Combo(1.0 / s.alpha, (-s.sigma / s.alpha,))
    return Combo(0.0, (1.0,))


def first_order(form: str, s: Node, t: Node) -> Combo:
    """DPM-Solver-1 = DDIM: x_t = a x_s + c h φ_1(z) m_s."""
    if t.zero:
        return to_zero(form, s)
    a, c, z, h = linear_part(form, s, t)
    return Combo(a, (c * h * phi(1, z),))


def _poly_mul(p: list[Scalar], q: list[Scalar]) -> list[Scalar]:
    out: list[Scalar] = [0.0] * (len(p) + len(q) - 1)
    for i, pi in enumerate(p):
        for j, qj in enumerate(q):
            out[i + j] += pi * qj
    return out


def lagrange_coefficients(v: list[Scalar]) -> list[list[Scalar]]:
    """Power-series coefficients c[j][k] of the Lagrange basis L_j(v) = Σ_k c[j][k] v^k on nodes v."""
    rows = []
    for j, vj in enumerate(v):
        poly: list[Scalar] = [1.0]
        for m, vm in enumerate(v):
            if m != j:
                poly = _poly_mul(poly, [-vm / (vj - vm), 1.0 / (vj - vm)])
        rows.append(poly)
    return rows


def lagrange(form: str, history: list[Node], t: Node) -> Combo:
    """Integrate exactly the polynomial in λ through the model outputs at history (newest first, history[0] = s).

    With v = (λ − λ_s)/h and P(v) = Σ_j m_j L_j(v):  x_t = a x_s + c h Σ_k k! φ_{k+1}(z) [v^k]P.
    This is DEIS' tAB in log ρ (ρ = σ̄) and the 'taylor' form of multistep DPM-Solver.
    """
    s = history[0]
    if t.zero:
        return to_zero(form, s)
    a, c, z, h = linear_part(form, s, t)
    v = [(p.lam - s.lam) / h for p in history]
    basis = lagrange_coefficients(v)
    phis = [math.factorial(k) * phi(k + 1, z) for k in range(len(history))]
    return Combo(a, tuple(c * h * sum(cj[k] * phis[k] for k in range(len(cj))) for cj in basis))


def third_order_differences(history: list[Node], h: Scalar) -> tuple[tuple[Scalar, ...], tuple[Scalar, ...]]:
    """Lu et al.'s D1 = h P'(0) and D2 = h² P''(0)/2 of the quadratic P(λ − λ_s) through the last three outputs, as
    weights on (m0, m1, m2): with r0 = h_0/h, r1 = h_1/h, D1_0 = (m0 − m1)/r0, D1_1 = (m1 − m2)/r1,
    D1 = D1_0 + r0/(r0 + r1)·(D1_0 − D1_1), D2 = (D1_0 − D1_1)/(r0 + r1)."""
    r0 = (history[0].lam - history[1].lam) / h
    r1 = (history[1].lam - history[2].lam) / h
    d10 = (1.0 / r0, -1.0 / r0, 0.0)
    d11 = (0.0, 1.0 / r1, -1.0 / r1)
    diff = tuple(p - q for p, q in zip(d10, d11))
    d1 = tuple(p + r0 / (r0 + r1) * q for p, q in zip(d10, diff))
    d2 = tuple(q / (r0 + r1) for q in diff)
    return d1, d2


def dpm_multistep(form: str, history: list[Node], t: Node, variant: str) -> Combo:
    """Multistep DPM-Solver(++) as Lu et al. write it, with D_k differences of the outputs.

    order 2, 'midpoint': x_t = a x + c h φ_1 (D0 + D1/2), D1 = (m0 − m1)/r0, r0 = h_0/h;
    order 3, 'diffusers': x_t = a x + c h (φ_1 D0 + φ_2 D1 + φ_3 D2) with D1 = h P'(0), D2 = h² P''(0)/2 of the
    quadratic P through the last three outputs (the published 3M; its D2 term is half the exact one);
    'taylor': the exact integral of the interpolating polynomial (see `lagrange`).
    """
    order = len(history)
    if order == 1 or variant == "taylor" or t.zero:
        return lagrange(form, history, t)
    s = history[0]
    a, c, z, h = linear_part(form, s, t)
    if order == 2:  # 'diffusers' warms its 3M up with the midpoint 2M
        if variant not in ("midpoint", "diffusers"):
            raise SolverError(
                f"unknown multistep variant {variant!r}; valid ones are 'midpoint', 'taylor', 'diffusers'"
            )
        r0 = (s.lam - history[1].lam) / h
        base = c * h * phi(1, z)
        return Combo(a, (base * (1.0 + 0.5 / r0), -base * 0.5 / r0))
    if order == 3:
        if variant != "diffusers":
            raise SolverError(f"unknown 3rd-order multistep variant {variant!r}; valid ones are 'taylor', 'diffusers'")
        d1, d2 = third_order_differences(history, h)
        f1, f2, f3 = phi(1, z), phi(2, z), phi(3, z)
        d0 = (1.0, 0.0, 0.0)
        return Combo(a, tuple(c * h * (f1 * p + f2 * q + f3 * r) for p, q, r in zip(d0, d1, d2)))
    raise SolverError(f"multistep DPM-Solver has orders 1 to 3, got {order}")
