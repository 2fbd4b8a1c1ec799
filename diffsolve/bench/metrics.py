"""Error metrics: RMSE per dimension, relative error, per-sample errors and their quantiles, mode flips, sliced
Wasserstein-2, MMD² (Gaussian kernel), Fréchet distance of Gaussian fits, fitted order.

Pure functions of tensors: the bench, the tuner (a robust objective on per-sample errors) and users share them.
"""

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


def per_sample_err(x: Tensor, ref: Tensor) -> Tensor:
    """e_i = √(mean over coordinates of (x_i − ref_i)²), shape (n,): each sample's RMSE per dimension.

    Differentiable (no detach, the inputs' dtype), so a tuning objective can use it; the bench's fields take it in
    float64 on detached copies."""
    if x.shape != ref.shape:
        raise DiffsolveError(f"cannot compare shapes {tuple(x.shape)} and {tuple(ref.shape)}; they must match")
    return torch.sqrt(torch.mean((x - ref).reshape(x.shape[0], -1) ** 2, 1))


def max_err(x: Tensor, ref: Tensor) -> float:
    """The worst sample's RMSE per dimension (a mode flip of a single sample shows here)."""
    return float(per_sample_err(*_pair(x, ref)).max())


def quantiles(values: Tensor, qs: Sequence[float]) -> list[float]:
    """The q-quantiles of a 1-D tensor (linear interpolation between order statistics, numpy's default)."""
    v = values.detach().to(F64).reshape(-1)
    if v.numel() == 0:
        raise DiffsolveError("quantiles of an empty set of values are undefined; give at least one value")
    return [float(q) for q in torch.quantile(v, torch.tensor(list(qs), dtype=F64))]


def err_quantiles(x: Tensor, ref: Tensor, qs: Sequence[float] = (0.5, 0.9)) -> list[float]:
    """Quantiles of the per-sample errors (median and 90th percentile by default): where the error hides."""
    return quantiles(per_sample_err(*_pair(x, ref)), qs)


def flips(labels: Tensor, ref_labels: Tensor) -> int:
    """The number of samples whose component (mode) label differs from their reference's."""
    if labels.shape != ref_labels.shape:
        raise DiffsolveError(f"cannot compare component labels of shapes {tuple(labels.shape)} and "
                             f"{tuple(ref_labels.shape)}; give one label per sample for both")
    return int((labels != ref_labels).sum())


def projections(dim: int, count: int, seed: int = 0) -> Tensor:
    """`count` random unit directions in R^dim, shape (dim, count), fixed by `seed`."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(dim, count, generator=g, dtype=F64)
    return d / torch.linalg.vector_norm(d, dim=0, keepdim=True)


def _flat(x: Tensor) -> Tensor:
    return x.detach().to(F64).reshape(x.shape[0], -1).cpu()


def _same_dim(a: Tensor, b: Tensor, what: str) -> None:
    if a.shape[1:] != b.shape[1:]:
        raise DiffsolveError(f"{what} needs two sample sets of equal dimension, got shapes {tuple(a.shape)} and "
                             f"{tuple(b.shape)}; compare samples of the same shape")


def sorted_w2_squared(pa: Tensor, pb: Tensor) -> Tensor:
    """W2² between 1-d empirical laws, one per column, from sorted columns pa (n, D) and pb (m, D):
    ∫₀¹ (F_a⁻¹(u) − F_b⁻¹(u))² du, exact: on each piece between the breakpoints i/n and j/m both quantile
    functions are constant (integer breakpoints i·m and j·n over n·m)."""
    n, m = pa.shape[0], pb.shape[0]
    if n == m:
        return torch.mean((pa - pb) ** 2, 0)
    cuts = torch.unique(torch.cat([torch.arange(1, n + 1) * m, torch.arange(1, m + 1) * n]))  # sorted, ends at n·m
    widths = torch.diff(cuts, prepend=cuts.new_zeros(1)).to(F64) / (n * m)
    ia, ib = (cuts + m - 1) // m - 1, (cuts + n - 1) // n - 1  # the order statistic in force on (cut_prev, cut]
    return widths @ (pa[ia] - pb[ib]) ** 2


def sliced_w2(a: Tensor, b: Tensor, directions: Tensor | int = 256, seed: int = 0) -> float:
    """Sliced W2: √(mean over directions θ of W2²(θ·a, θ·b)), 1-d W2 between the empirical laws by sorting (for
    equal sample counts the mean squared difference of the sorted projections; else `sorted_w2_squared`)."""
    a, b = _flat(a), _flat(b)
    _same_dim(a, b, "sliced_w2")
    dirs = projections(a.shape[1], directions, seed) if isinstance(directions, int) else directions
    pa, _ = torch.sort(a @ dirs, 0)
    pb, _ = torch.sort(b @ dirs, 0)
    if a.shape == b.shape:  # the historical formula, bit for bit
        return float(torch.sqrt(torch.mean((pa - pb) ** 2)))
    return float(torch.sqrt(torch.mean(sorted_w2_squared(pa, pb))))


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """‖a_i − b_j‖², shape (n, m), float64, clamped at 0 (the expanded form's round-off)."""
    a, b = _flat(a), _flat(b)
    _same_dim(a, b, "squared_distances")
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)).clamp_min(0.0)


def median_bandwidth(x: Tensor) -> float:
    """The median heuristic: h = median of the pairwise distances ‖x_i − x_j‖, i < j."""
    d2 = squared_distances(x, x)
    i, j = torch.triu_indices(d2.shape[0], d2.shape[1], offset=1)
    h = float(torch.sqrt(torch.median(d2[i, j])))
    if not h > 0:
        raise DiffsolveError("the median distance between samples is 0 (more than half the pairs coincide); the "
                             "median-heuristic bandwidth needs distinct samples: remove the duplicates")
    return h


def gaussian_kernel(a: Tensor, b: Tensor, bandwidth: float) -> Tensor:
    """k(a_i, b_j) = exp(−‖a_i − b_j‖² / (2h²)), shape (n, m)."""
    return torch.exp(-squared_distances(a, b) / (2.0 * bandwidth * bandwidth))


def mmd2_from_kernels(kxx: Tensor, kyy: Tensor, kxy: Tensor) -> float:
    """Unbiased MMD²: Σ_{i≠j} k(x_i,x_j)/(n(n−1)) + Σ_{i≠j} k(y_i,y_j)/(m(m−1)) − 2 Σ k(x_i,y_j)/(nm)."""
    n, m = kxx.shape[0], kyy.shape[0]
    if n < 2 or m < 2:
        raise DiffsolveError(f"the unbiased MMD² needs at least 2 samples on each side, got {n} and {m}")
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def mmd2(x: Tensor, y: Tensor, bandwidth: float) -> float:
    """Unbiased MMD² between two sample sets with the Gaussian kernel of bandwidth h (may be < 0 near equal laws)."""
    return mmd2_from_kernels(gaussian_kernel(x, x, bandwidth), gaussian_kernel(y, y, bandwidth),
                             gaussian_kernel(x, y, bandwidth))


def _sym_sqrt(m: Tensor) -> Tensor:
    w, v = torch.linalg.eigh((m + m.T) / 2)
    return (v * w.clamp_min(0.0).sqrt()) @ v.T


def frechet_gaussians(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """W2² between N(μ1, Σ1) and N(μ2, Σ2): ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2(Σ1Σ2)^½), with
    tr (Σ1Σ2)^½ = tr (Σ1^½ Σ2 Σ1^½)^½ (a symmetric PSD square root: no complex round-off)."""
    mu1, mu2, cov1, cov2 = (t.detach().to(F64).cpu() for t in (mu1, mu2, cov1, cov2))
    s1 = _sym_sqrt(cov1)
    cross = torch.linalg.eigvalsh((s1 @ cov2 @ s1 + (s1 @ cov2 @ s1).T) / 2).clamp_min(0.0).sqrt().sum()
    return float(((mu1 - mu2) ** 2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2.0 * cross)


def frechet_distance(fa: Tensor, fb: Tensor) -> float:
    """The Fréchet distance (FID's formula) between Gaussian fits (mean, covariance with 1/(n−1)) of two feature
    sets of shape (n, F) and (m, F)."""
    fa, fb = _flat(fa), _flat(fb)
    _same_dim(fa, fb, "frechet_distance")
    if min(fa.shape[0], fb.shape[0]) < 2:
        raise DiffsolveError(f"a Fréchet distance needs at least 2 samples per set to fit a covariance, got "
                             f"{fa.shape[0]} and {fb.shape[0]}")
    return frechet_gaussians(fa.mean(0), torch.atleast_2d(torch.cov(fa.T)), fb.mean(0),
                             torch.atleast_2d(torch.cov(fb.T)))


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
