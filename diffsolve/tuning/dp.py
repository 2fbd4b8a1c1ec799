"""GITS-style dynamic programming: a cost matrix of one-step errors along the teacher, and the cheapest K-step path.

C[i, j] (i < j) = RMSE of one DDIM step t_i → t_j from the teacher's state x*(t_i) against x*(t_j): in VP
coordinates x_j = α_j (x_i/α_i + (σ̄_j − σ̄_i) ε(x_i, t_i)), with ε the teacher's own evaluation at node i (no
network call). The K-step path 0 → M − 1 minimising Σ C is found exactly in O(K M²).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import GridError
from ..points import make_points
from ..schedules import F64, Schedule


def ddim_sq_errors(schedule: Schedule, times: Tensor, path: Tensor, eps: Tensor) -> Tensor:
    """S[i, j] = Σ over draws and dimensions of the squared one-step DDIM error i → j (i < j), else 0; (M, M)."""
    pts = make_points(schedule, times)
    m = len(pts)
    out = torch.zeros(m, m, dtype=F64, device=path.device)  # on the states' device: no copy per entry
    for i in range(m - 1):
        xbar = path[i].to(F64) * (1.0 / pts[i].alpha)
        e = eps[i].to(F64)
        for j in range(i + 1, m):
            pred = (xbar + (pts[j].sigma_bar - pts[i].sigma_bar) * e) * pts[j].alpha
            out[i, j] = torch.sum((pred - path[j].to(F64)) ** 2)
    return out


def rmse_costs(sq: Tensor, count: int) -> np.ndarray:
    """C = √(S / count) above the diagonal, +∞ elsewhere."""
    cost = np.sqrt(sq.numpy() / count)
    cost[np.tril_indices(cost.shape[0])] = np.inf
    return cost


def dp_path(cost: np.ndarray, steps: int) -> list[int]:
    """The path 0 = i_0 < … < i_K = M−1 with K = `steps` minimising Σ_k C[i_k, i_{k+1}] (exact DP)."""
    m = cost.shape[0]
    if not 1 <= steps <= m - 1:
        raise GridError(f"cannot pick {steps} steps from {m} candidate times; use between 1 and {m - 1} steps "
                        f"(raise candidates=)")
    best = np.full((steps + 1, m), np.inf)  # best[k, j]: cheapest k-step path 0 → j
    back = np.zeros((steps + 1, m), dtype=np.int64)
    best[0, 0] = 0.0
    for k in range(1, steps + 1):
        total = best[k - 1][:, None] + cost  # total[i, j] = best[k−1, i] + C[i, j]
        back[k] = np.argmin(total, axis=0)
        best[k] = total[back[k], np.arange(m)]
    path = [m - 1]
    for k in range(steps, 0, -1):
        path.append(int(back[k, path[-1]]))
    return path[::-1]
