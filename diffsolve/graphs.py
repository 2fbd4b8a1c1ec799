"""Capture a whole fixed-step sampling loop as one CUDA graph and replay it.

The loop's coefficients are Python floats baked into the kernels and its time inputs are tensors
made before capture, so one capture per (model, dynamics, solver, grid, shape, dtype) replays the
exact same arithmetic as the eager loop with one launch. The NFE of a replay is the number of
network calls counted while capturing (replays run no Python, so they cannot be counted again).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .dynamics import Dynamics
from .errors import SolverError
from .grids import Grid
from .solvers.base import Solver

_CACHE_SIZE = 8


@dataclass
class CapturedLoop:
    """A captured sampling loop: copy into `x_in`, replay `graph`, read `x_out` / `trajectory`."""

    graph: torch.cuda.CUDAGraph
    x_in: Tensor
    x_out: Tensor
    trajectory: list[Tensor]
    nfe: int
    finite_flags: list[Tensor]
    flag_times: list[float]


_cache: OrderedDict[tuple, CapturedLoop] = OrderedDict()


def _key(solver: Solver, dynamics: Dynamics, grid: Grid, x: Tensor, record: bool, options: dict) -> tuple:
    return (
        solver.name, id(dynamics.model), type(dynamics).__name__, dynamics.variable, tuple(grid.t.tolist()),
        tuple(x.shape), x.dtype, str(x.device), record, repr(sorted(options.items())),
    )


def check_capturable(solver: Solver, x: Tensor, options: dict[str, Any]) -> None:
    """Raise unless this solve can be captured: a CUDA state and a fixed-step deterministic solver."""
    if not x.is_cuda:
        raise SolverError(
            f"cuda_graph=True needs the state on a CUDA device, got {x.device}; move x_T to 'cuda' "
            f"or drop cuda_graph"
        )
    if solver.adaptive or solver.stochastic_for(**options) or solver.family == "torchdiffeq":
        raise SolverError(
            f"solver {solver.name!r} cannot be captured as a CUDA graph (adaptive, stochastic and "
            f"torchdiffeq loops sync with the host); use a fixed-step solver or drop cuda_graph"
        )


def integrate_graphed(
    solver: Solver, dynamics: Dynamics, x: Tensor, grid: Grid, *, record: bool, warmup: int = 1, **options: Any
) -> tuple[Tensor, list[Tensor], int]:
    """Run solver.integrate through a cached CUDA graph; returns (x_end, trajectory, nfe per run)."""
    check_capturable(solver, x, options)
    key = _key(solver, dynamics, grid, x, record, options)
    model = dynamics.model
    loop = _cache.get(key)
    if loop is None:
        x_in = x.detach().clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):  # lazy initialisation (cuBLAS handles, allocator) outside capture
                solver.integrate(dynamics, x_in, grid, record=record, **options)
        torch.cuda.current_stream(x.device).wait_stream(side)
        flags_before = len(model._finite_flags) if model is not None else 0
        nfe_before = model.nfe if model is not None else 0
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            x_out, trajectory = solver.integrate(dynamics, x_in, grid, record=record, **options)
        nfe = (model.nfe - nfe_before) if model is not None else 0
        flags = list(model._finite_flags[flags_before:]) if model is not None else []
        times = list(model._flag_times[flags_before:]) if model is not None else []
        if model is not None:
            model._finite_flags.clear()
            model._flag_times.clear()
        loop = CapturedLoop(graph, x_in, x_out, trajectory, nfe, flags, times)
        _cache[key] = loop
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    loop.x_in.copy_(x)
    loop.graph.replay()
    if model is not None:
        model.nfe += loop.nfe
        model._finite_flags.extend(loop.finite_flags)
        model._flag_times.extend(loop.flag_times)
    # clone: the graph's output buffers are overwritten by the next replay
    return loop.x_out.clone(), [v.clone() for v in loop.trajectory], loop.nfe


def clear_cache() -> None:
    """Forget every captured loop (frees their memory pools)."""
    _cache.clear()
