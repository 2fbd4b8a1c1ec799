"""φ-functions of exponential integrators, accurate for every h (series near 0, expm1 elsewhere).

φ_0(z) = e^z,  φ_{k+1}(z) = (φ_k(z) − 1/k!)/z,  i.e.  φ_k(z) = Σ_{j≥0} z^j/(j+k)!  = ∫_0^1 e^{(1−θ)z} θ^{k−1}/(k−1)! dθ,
so that ∫_0^h e^{(h−u)} u^k/k! du = h^{k+1} φ_{k+1}(h).
"""

from __future__ import annotations

import math

from torch import Tensor

from .scalar import Scalar, exp, expm1

_SERIES_BELOW = 1.0  # |z| below this: the power series (the recurrence would cancel catastrophically)
_TERMS = 30  # 1/30! ≈ 4e-33: the series is exact to float64 for |z| < 1


def phi(k: int, z: Scalar) -> Scalar:
    """φ_k(z) in float64 for k ≥ 0; relative error ≈ 1e-15 for every finite z (and the limits at z = −∞).

    z a Python float (math) or a 0-d float64 tensor (torch, differentiable; the branch is taken on its value)."""
    if k < 0:
        raise ValueError(f"phi needs k >= 0, got {k}")
    if k == 0:
        return exp(z)
    if not isinstance(z, Tensor) and math.isinf(z) and z < 0:  # a tensor z is a finite step (to σ = 0 is a float)
        return 0.0
    if abs(z) < _SERIES_BELOW:
        term, total = 1.0 / math.factorial(k), 0.0
        for j in range(_TERMS):
            total += term
            if abs(term) < 1e-17 * abs(total):
                break
            term *= z / (j + k + 1)
        return total
    value = expm1(z) / z
    for j in range(1, k):
        value = (value - 1.0 / math.factorial(j)) / z
    return value

