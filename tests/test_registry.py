"""The solver registry as a whole: identity by value, value-keyed caches."""

from __future__ import annotations

import torch

import diffsolve as ds
from diffsolve import grids
from diffsolve.solvers.exp.multistep import DPMMultistep
from tests.gaussian import GaussianData

F64 = torch.float64


def _setup():
    schedule = ds.VPLinear()
    model = GaussianData().model(schedule)
    x = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    return schedule, model, x


def test_plan_cache_is_keyed_by_the_solver_object_not_its_name():
    """Two unregistered solvers with one name but different orders must not share a cached plan on a grid."""
    schedule, model, x = _setup()
    grid = grids.logsnr(schedule, 8)
    dyn = ds.ode(model, "lambda")
    second, third = DPMMultistep("mine", 2, "data"), DPMMultistep("mine", 3, "data")
    a = ds.solve(dyn, x, grid, second).x
    b = ds.solve(dyn, x, grid, third).x  # same grid object: a name-keyed cache would return the order-2 plan
    assert torch.equal(a, ds.solve(dyn, x, grids.logsnr(schedule, 8), "dpmpp2m").x)
    assert torch.equal(b, ds.solve(dyn, x, grids.logsnr(schedule, 8), "dpmpp3m").x)
    assert not torch.equal(a, b)


def test_solvers_compare_by_value():
    assert DPMMultistep("mine", 2, "data") == DPMMultistep("mine", 2, "data")
    assert hash(DPMMultistep("mine", 2, "data")) == hash(DPMMultistep("mine", 2, "data"))
    assert DPMMultistep("mine", 2, "data") != DPMMultistep("mine", 3, "data")
    assert DPMMultistep("mine", 2, "data") != DPMMultistep("mine", 2, "noise")
    assert ds.get_solver("dpmpp2m") == DPMMultistep("dpmpp2m", 2, "data")
