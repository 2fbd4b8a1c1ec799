"""Dynamic thresholding of x̂0 (Saharia et al., Imagen): s = max(1, quantile_p |x̂0|) ∧ s_max, x̂0 ← clip(x̂0, ±s)/s."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ...models import Model
from ...points import Point

Prediction = Callable[[Tensor, Point], Tensor]


def dynamic_threshold(x0: Tensor, ratio: float, max_value: float) -> Tensor:
    """Per-sample clip of x̂0 to ±s and rescale by 1/s, with s the `ratio` quantile of |x̂0| in [1, max_value]."""
    flat = x0.reshape(x0.shape[0], -1).abs()
    work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    s = torch.quantile(work, ratio, dim=1).clamp(min=1.0, max=max_value).to(x0.dtype)
    s = s.reshape(-1, *([1] * (x0.ndim - 1)))
    return torch.clamp(x0, -s, s) / s


def prediction_fn(model: Model, form: str, threshold: float | None, threshold_max: float) -> Prediction:
    """The model output a solver integrates: ε (form 'noise') or x̂0 (form 'data'), optionally thresholded."""
    if threshold is None:
        return model.eps_at if form == "noise" else model.x0_at
    ratio, top = float(threshold), float(threshold_max)
    if form == "data":
        def data(x: Tensor, p: Point) -> Tensor:
            return dynamic_threshold(model.x0_at(x, p), ratio, top)
        return data

    def noise(x: Tensor, p: Point) -> Tensor:
        eps = model.eps_at(x, p)
        x0 = dynamic_threshold(torch.add(x, eps, alpha=-p.sigma).mul_(1.0 / p.alpha), ratio, top)
        return torch.add(x, x0, alpha=-p.alpha).mul_(1.0 / p.sigma)
    return noise
