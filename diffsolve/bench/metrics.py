"""Error metrics: RMSE per dimension, relative error, sliced Wasserstein-2, fitted order."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import DiffsolveError

F64 = torch.float64


def _pair(x: Tensor, ref: Tensor) -> tuple[Tensor, Tensor]:
    if x.shape != ref.shape:
        raise DiffsolveError(f"cannot compare shapes {tuple(x.shape)} and {tuple(ref.shape)}; they must match")
    return x.detach().to(F64).reshape(x.shape[0], -1), ref.detach().to(F64).reshape(ref.shape[0], -1)


def rmse(x: Tensor, ref: Tensor) -> float:
    """Root mean square error per dimension: √(mean over samples and coordinates of (x − ref)²)."""
    a, b = _pair(x, ref)
    return float(torch.sqrt(torch.mean((a - b) ** 2)))


def rel_err(x: Tensor, ref: Tensor) -> float:
    """Relative error ‖x − ref‖_F / ‖ref‖_F over the whole batch."""
    a, b = _pair(x, ref)
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def max_err(x: Tensor, ref: Tensor) -> float:
    """The worst sample's RMSE per dimension (a mode flip of a single sample shows here)."""
    a, b = _pair(x, ref)
    return float(torch.sqrt(torch.mean((a - b) ** 2, 1)).max())


def projections(dim: int, count: int, seed: int = 0) -> Tensor:
    """`count` random unit directions in R^dim, shape (dim, count), fixed by `seed`."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(dim, count, generator=g, dtype=F64)
    return d / torch.linalg.vector_norm(d, dim=0, keepdim=True)


def sliced_w2(a: Tensor, b: Tensor, directions: Tensor | int = 256, seed: int = 0) -> float:
    """Sliced W2: √(mean over directions θ of W2²(θ·a, θ·b)), 1-d W2 by sorting (equal sample counts)."""
    a, b = a.detach().to(F64).reshape(a.shape[0], -1).cpu(), b.detach().to(F64).reshape(b.shape[0], -1).cpu()
    if a.shape != b.shape:
        raise DiffsolveError(
            f"sliced_w2 needs two sample sets of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}; "
            f"draw as many exact samples as the solver produced"
        )
    dirs = projections(a.shape[1], directions, seed) if isinstance(directions, int) else directions
    pa, _ = torch.sort(a @ dirs, 0)
    pb, _ = torch.sort(b @ dirs, 0)
    return float(torch.sqrt(torch.mean((pa - pb) ** 2)))


def fitted_order(
    nfe: Sequence[float], err: Sequence[float], *, last: int | None = 3, min_nfe: float | None = None,
    floor: float = 0.0,
) -> tuple[float | None, list[float]]:
    """Order p of err ≈ C·NFE^(−p): minus the least-squares slope of log err on log NFE.

    The asymptotic range is the `last` largest-NFE points (all when None) with NFE ≥ min_nfe and
    err > floor (errors at the reference's own accuracy carry no order). Returns (p or None when
    fewer than 2 points remain, the NFEs used).
    """
    pts = sorted((float(n), float(e)) for n, e in zip(nfe, err)
                 if e is not None and math.isfinite(e) and e > floor and n > 0
                 and (min_nfe is None or n >= min_nfe))
    if last is not None:
        pts = pts[-last:]
    if len({n for n, _ in pts}) < 2:
        return None, [n for n, _ in pts]
    xs = [math.log(n) for n, _ in pts]
    ys = [math.log(e) for _, e in pts]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return -slope, [n for n, _ in pts]
