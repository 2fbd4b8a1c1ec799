"""Scalar functions of Python floats or 0-d tensors, so that one coefficient formula serves two paths.

The plan of a solve is built from Python floats with `math` (bit for bit as before); the same formulas called on
0-d float64 tensors build a differentiable plan (torch), whose coefficients are functions of the grid's λ (tuning).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

Scalar = float | Tensor


def exp(z: Scalar) -> Scalar:
    """e^z."""
    return torch.exp(z) if isinstance(z, Tensor) else math.exp(z)


def expm1(z: Scalar) -> Scalar:
    """e^z − 1, accurate near 0."""
    return torch.expm1(z) if isinstance(z, Tensor) else math.expm1(z)


def sqrt(z: Scalar) -> Scalar:
    """√z."""
    return torch.sqrt(z) if isinstance(z, Tensor) else math.sqrt(z)
