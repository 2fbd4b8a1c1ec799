import pytest
import torch

import diffsolve as ds

F64 = torch.float64


@pytest.mark.parametrize("name", ["time", "logsnr", "quadratic", "karras"])
@pytest.mark.parametrize("schedule", [ds.VPLinear(), ds.VPCosine(), ds.DiscreteDDPM(), ds.EDM()], ids=repr)
def test_grids_are_strictly_decreasing_with_exact_ends(name, schedule):
    g = ds.grids.make(name, schedule, 7)
    assert g.t.dtype == F64 and g.steps == 7 and g.decreasing
    assert g.t[0].item() == schedule.t_max and g.t[-1].item() == schedule.t_min
    assert bool((torch.diff(g.t) < 0).all())


def test_grid_shapes_follow_their_definitions():
    s = ds.VPLinear()
    lam = ds.grids.logsnr(s, 10).lam
    assert torch.allclose(torch.diff(lam), torch.full((10,), (lam[-1] - lam[0]).item() / 10, dtype=F64), atol=1e-10)
    assert torch.allclose(torch.diff(ds.grids.time(s, 10).t), torch.full((10,), -(1 - 1e-3) / 10, dtype=F64))
    root_steps = torch.diff(ds.grids.quadratic(s, 10).t.sqrt())
    assert torch.allclose(root_steps, torch.full((10,), (1e-3**0.5 - 1) / 10, dtype=F64))
    sb = ds.grids.karras(ds.EDM(), 10, rho=7).sigma_bar
    ramp = torch.linspace(0, 1, 11, dtype=F64)
    expected = (80 ** (1 / 7) + ramp * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert torch.allclose(sb, expected, rtol=1e-12)


def test_custom_grid_validation():
    s = ds.VPLinear()
    ds.grids.custom(s, [1.0, 0.5, 0.001])
    ds.grids.custom(s, [0.001, 0.5, 1.0])  # increasing grids serve the forward SDE
    with pytest.raises(ds.GridError, match=r"strictly monotone; t\[1\] = 0.5 and t\[2\] = 0.5"):
        ds.grids.custom(s, [1.0, 0.5, 0.5, 0.1])
    with pytest.raises(ds.GridError, match="strictly monotone"):
        ds.grids.custom(s, [1.0, 0.2, 0.5])
    with pytest.raises(ds.ScheduleError, match=r"outside the schedule.*\[0.001, 1\]"):
        ds.grids.custom(s, [1.5, 0.5])
    with pytest.raises(ds.GridError, match="finite"):
        ds.grids.custom(s, [1.0, float("nan")])
    with pytest.raises(ds.GridError, match="at least 2"):
        ds.grids.custom(s, [1.0])
    with pytest.raises(ds.GridError, match="positive integer"):
        ds.grids.logsnr(s, 0)
    with pytest.raises(ds.GridError, match="valid grid names are: karras, logsnr, quadratic, time"):
        ds.grids.make("uniform", s, 5)
