"""CUDA-graph capture of the fixed-step loop: same samples as the eager loop (skipped without CUDA)."""

import pytest
import torch

import diffsolve as ds

S = ds.VPLinear()


def test_capture_requires_cuda_and_a_fixed_step_solver():
    model = ds.EpsModel(lambda x, t: 0.1 * x, S)
    x = torch.randn(4, 3)
    with pytest.raises(ds.SolverError, match="needs the state on a CUDA device"):
        ds.solve(ds.ode(model), x, ds.grids.logsnr(S, 4), "heun", cuda_graph=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("solver", ["euler", "heun", "rk4"])
def test_graph_replay_matches_eager(solver):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.SiLU(), torch.nn.Linear(64, 16)).cuda()
    model = ds.EpsModel(lambda x, t: net(x) * (1 + 1e-3 * t[:, None]), S)
    grid = ds.grids.logsnr(S, 10)
    x = torch.randn(32, 16, device="cuda")
    with torch.no_grad():
        eager = ds.solve(ds.ode(model, "lambda"), x, grid, solver)
        graphed = ds.solve(ds.ode(model, "lambda"), x, grid, solver, cuda_graph=True)
        again = ds.solve(ds.ode(model, "lambda"), 2 * x, grid, solver, cuda_graph=True)
        eager2 = ds.solve(ds.ode(model, "lambda"), 2 * x, grid, solver)
    assert graphed.nfe == eager.nfe
    assert torch.allclose(graphed.x, eager.x, rtol=1e-5, atol=1e-5)
    assert torch.allclose(again.x, eager2.x, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_capture_of_a_compiled_network():
    """The captured loop works when the network is a torch.compile'd module."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.SiLU(), torch.nn.Linear(64, 16)).cuda()
    compiled = torch.compile(net)
    grid = ds.grids.logsnr(S, 8)
    x = torch.randn(32, 16, device="cuda")
    with torch.no_grad():
        eager = ds.solve(ds.ode(ds.EpsModel(lambda v, t: net(v), S), "lambda"), x, grid, "heun")
        model = ds.EpsModel(lambda v, t: compiled(v), S)
        graphed = ds.solve(ds.ode(model, "lambda"), x, grid, "heun", cuda_graph=True)
    assert graphed.nfe == eager.nfe == 16
    assert torch.allclose(graphed.x, eager.x, rtol=1e-4, atol=1e-4)


def test_graph_cache_keys_options_and_the_solver_by_value():
    from diffsolve.graphs import loop_key
    from diffsolve.valuecache import value_key

    assert value_key({"eta": 1.0, "order": 2}) == value_key({"order": 2, "eta": 1.0})
    assert len({value_key(1), value_key(1.0), value_key(True)}) == 3  # equal in Python, different options
    assert value_key([0.5, "a"]) != value_key((0.5, "a"))
    assert value_key(torch.tensor([1.0, 2.0])) == value_key(torch.tensor([1.0, 2.0]))
    assert value_key(torch.tensor([1.0, 2.0])) != value_key(torch.tensor([1.0, 2.5]))
    model = ds.EpsModel(lambda x, t: 0.1 * x, S)
    grid, x = ds.grids.logsnr(S, 4), torch.randn(2, 3)
    heun, euler = ds.get_solver("heun"), ds.get_solver("euler")
    k = loop_key(heun, ds.ode(model, "lambda"), grid, x, False, {"a": 1.0})
    assert k == loop_key(heun, ds.ode(model, "lambda"), ds.grids.logsnr(S, 4), x.clone(), False, {"a": 1.0})
    same = type(heun)(heun.name, heun.tableau, heun.description)  # another object, equal by value
    assert k == loop_key(same, ds.ode(model, "lambda"), grid, x, False, {"a": 1.0})
    assert k != loop_key(euler, ds.ode(model, "lambda"), grid, x, False, {"a": 1.0})
    assert k != loop_key(heun, ds.ode(model, "sigma"), grid, x, False, {"a": 1.0})
    assert k != loop_key(heun, ds.ode(model, "lambda"), grid, x, False, {"a": 1})
    assert k != loop_key(heun, ds.ode(model, "lambda"), ds.grids.logsnr(S, 5), x, False, {"a": 1.0})


def test_graph_cache_is_held_by_the_model_and_evicts_least_recent():
    from diffsolve.graphs import cache_of, clear_cache
    from diffsolve.valuecache import ValueCache

    a, b = ds.EpsModel(lambda x, t: x, S), ds.EpsModel(lambda x, t: x, S)
    assert a.graph_cache is None
    cache = cache_of(a)
    assert cache_of(a) is cache and cache_of(b) is not cache  # one per model: no global keyed by id
    small = ValueCache(2)
    for key in ("k1", "k2", "k3"):
        small.put((key,), object())
    assert small.peek(("k1",)) is None and small.peek(("k3",)) is not None and len(small) == 2
    cache.put(("k",), object())
    clear_cache(a)
    assert len(cache) == 0
