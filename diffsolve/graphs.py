"""Capture a whole fixed-step sampling loop as one CUDA graph and replay it.

The loop's coefficients are Python floats baked into the kernels and its time inputs are tensors
made before capture, so one capture per (model, dynamics, solver, grid, shape, dtype, options) replays
the exact same arithmetic as the eager loop with one launch. The captures live on the model
(`model.graph_cache`, a ValueCache keyed by value): they are freed with it, and a new model never meets an
old model's capture. The NFE of a replay is the number of network calls made while capturing, counted again
through the model's public `set_aside`/`replay` (replays run no Python).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .dynamics import Dynamics
from .errors import SolverError
from .grids import Grid
from .models import CallRecord, Model
from .solvers.base import Solver
from .valuecache import ValueCache, value_key

CACHE_SIZE = 8  # captured loops kept per model


@dataclass
class CapturedLoop:
    """A captured sampling loop: copy into `x_in`, replay `graph`, read `x_out` / `trajectory`; `calls` are the
    network calls (and their finiteness checks) the capture made, counted again at each replay."""

    graph: torch.cuda.CUDAGraph
    x_in: Tensor
    x_out: Tensor
    trajectory: list[Tensor]
    calls: CallRecord


def loop_key(solver: Solver, dynamics: Dynamics, grid: Grid, x: Tensor, record: bool, options: dict) -> Hashable:
    """What a captured loop depends on, by value: the solver and its options, the dynamics' type and variable, the
    grid's times and evaluation times, the state's shape, dtype and device, and whether the trajectory is kept."""
    return value_key((solver, type(dynamics), dynamics.variable, grid.t, grid.t_eval, tuple(x.shape), x.dtype,
                      str(x.device), record, options))


def cache_of(model: Model) -> ValueCache:
    """The model's captured loops (held on the model, so they die with it), made on first use."""
    if not isinstance(model.graph_cache, ValueCache):
        model.graph_cache = ValueCache(CACHE_SIZE)
    return model.graph_cache


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
    """Run solver.integrate through a CUDA graph cached on the model; returns (x_end, trajectory, nfe per run)."""
    check_capturable(solver, x, options)
    model = dynamics.model
    if model is None:
        raise SolverError(f"cuda_graph=True captures a model's sampling loop; {dynamics!r} has no model")
    cache = cache_of(model)
    key = loop_key(solver, dynamics, grid, x, record, options)
    loop = cache.peek(key)
    if loop is None:
        loop = cache.put(key, _capture(solver, dynamics, x, grid, record, warmup, options))
    loop.x_in.copy_(x)
    loop.graph.replay()
    model.replay(loop.calls)
    # clone: the graph's output buffers are overwritten by the next replay
    return loop.x_out.clone(), [v.clone() for v in loop.trajectory], loop.calls.nfe


def _capture(solver: Solver, dynamics: Dynamics, x: Tensor, grid: Grid, record: bool, warmup: int,
             options: dict[str, Any]) -> CapturedLoop:
    """Warm up on a side stream (its calls dropped), then capture one loop (its calls kept for the replays)."""
    model = dynamics.model
    x_in = x.detach().clone()
    side = torch.cuda.Stream(device=x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(side), model.set_aside():
        for _ in range(warmup):  # lazy initialisation (cuBLAS handles, allocator) outside capture
            solver.integrate(dynamics, x_in, grid, record=record, **options)
    torch.cuda.current_stream(x.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with model.set_aside() as calls, torch.cuda.graph(graph):
        x_out, trajectory = solver.integrate(dynamics, x_in, grid, record=record, **options)
    return CapturedLoop(graph, x_in, x_out, trajectory, calls)


def clear_cache(model: Model) -> None:
    """Forget every loop captured for `model` (frees their memory pools)."""
    if isinstance(model.graph_cache, ValueCache):
        model.graph_cache.clear()
