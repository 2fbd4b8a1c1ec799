"""Capture a whole fixed-step sampling loop as one CUDA graph and replay it.

The loop's coefficients are Python floats baked into the kernels and its time inputs are tensors
made before capture, so one capture per (model, dynamics, solver, grid, shape, dtype, options) replays
the exact same arithmetic as the eager loop with one launch. The captures live on the model
(`model.graph_cache`): they are freed with it, and a new model never meets an old model's capture.
The NFE of a replay is the number of network calls counted while capturing (replays run no Python,
so they cannot be counted again).
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
from .models import Model
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
    finite_checks: list[tuple[Tensor, str, float]]


def value_key(v: Any) -> Any:
    """A hashable key equal for equal option values: numbers and strings with their type (1, 1.0 and True
    differ), containers element-wise, tensors by dtype, shape and values; any other object by identity —
    the key holds the object itself, so its id cannot be reused while the entry lives."""
    if v is None or isinstance(v, (bool, int, float, str, complex)):
        return (type(v).__name__, v)
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(value_key(e) for e in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((str(k), value_key(e)) for k, e in v.items())))
    if isinstance(v, Tensor):
        return ("tensor", v.dtype, tuple(v.shape), str(v.device), tuple(v.detach().cpu().reshape(-1).tolist()))
    return ("object", _Identity(v))


class _Identity:
    """Hash and compare by identity while holding a strong reference (so the id stays reserved)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


class GraphCache:
    """The captured loops of one model (held on `model.graph_cache`, so they die with it), least recently
    used first out. Keyed by the solver object (held), the dynamics' type and variable, the grid's times,
    the state's shape/dtype/device, `record`, and the options by value."""

    def __init__(self, size: int = _CACHE_SIZE):
        self.size = size
        self._loops: OrderedDict[tuple, CapturedLoop] = OrderedDict()

    def __len__(self) -> int:
        return len(self._loops)

    @staticmethod
    def key(solver: Solver, dynamics: Dynamics, grid: Grid, x: Tensor, record: bool, options: dict) -> tuple:
        return (
            _Identity(solver), type(dynamics), dynamics.variable, tuple(grid.t.tolist()),
            None if grid.t_eval is None else tuple(grid.t_eval.tolist()),
            tuple(x.shape), x.dtype, str(x.device), record, value_key(options),
        )

    def get(self, key: tuple) -> CapturedLoop | None:
        loop = self._loops.get(key)
        if loop is not None:
            self._loops.move_to_end(key)
        return loop

    def put(self, key: tuple, loop: CapturedLoop) -> None:
        self._loops[key] = loop
        while len(self._loops) > self.size:
            self._loops.popitem(last=False)

    def clear(self) -> None:
        """Forget every captured loop (frees their memory pools)."""
        self._loops.clear()


def cache_of(model: Model) -> GraphCache:
    """The model's graph cache, made on first use."""
    if not isinstance(model.graph_cache, GraphCache):
        model.graph_cache = GraphCache()
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
    key = cache.key(solver, dynamics, grid, x, record, options)
    loop = cache.get(key)
    if loop is None:
        earlier = model.finite_checks.since(0)  # e.g. solve()'s check of the input state
        x_in = x.detach().clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):  # lazy initialisation (cuBLAS handles, allocator) outside capture
                solver.integrate(dynamics, x_in, grid, record=record, **options)
        torch.cuda.current_stream(x.device).wait_stream(side)
        checks_before, nfe_before = len(model.finite_checks), model.nfe
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            x_out, trajectory = solver.integrate(dynamics, x_in, grid, record=record, **options)
        captured = model.finite_checks.since(checks_before)
        # the warm-up's checks are dropped; the capture's refer to its buffers and are re-read after each replay
        model.finite_checks.clear()
        model.finite_checks.extend(earlier)
        loop = CapturedLoop(graph, x_in, x_out, trajectory, model.nfe - nfe_before, captured)
        cache.put(key, loop)
    loop.x_in.copy_(x)
    loop.graph.replay()
    model.nfe += loop.nfe
    model.finite_checks.extend(loop.finite_checks)
    # clone: the graph's output buffers are overwritten by the next replay
    return loop.x_out.clone(), [v.clone() for v in loop.trajectory], loop.nfe


def clear_cache(model: Model) -> None:
    """Forget every loop captured for `model` (frees their memory pools)."""
    if isinstance(model.graph_cache, GraphCache):
        model.graph_cache.clear()
