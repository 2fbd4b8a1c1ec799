import math

import pytest
import torch

import diffsolve as ds

F64 = torch.float64
SCHEDULES = {
    "linear": ds.VPLinear(),
    "cosine": ds.VPCosine(),
    "discrete": ds.DiscreteDDPM(),
    "discrete-table": ds.DiscreteDDPM(alphas_cumprod=torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)),
    "edm": ds.EDM(),
}


def _times(s: ds.Schedule, n: int = 997) -> torch.Tensor:
    return torch.linspace(s.t_min, s.t_max, n, dtype=F64)


@pytest.mark.parametrize("name", SCHEDULES)
def test_lambda_and_sigma_bar_round_trips(name):
    s = SCHEDULES[name]
    t = _times(s)
    lam, sb = s.lam(t), s.sigma_bar(t)
    assert torch.allclose(s.lam(s.t_from_lambda(lam)), lam, rtol=0, atol=1e-10)
    assert (s.sigma_bar(s.t_from_sigma_bar(sb)) / sb - 1).abs().max() <= 1e-10
    assert (s.t_from_lambda(lam) - t).abs().max() <= 1e-10 * max(1.0, s.t_max)


@pytest.mark.parametrize("name", SCHEDULES)
def test_vp_identities(name):
    s = SCHEDULES[name]
    t = _times(s)
    a, sg = s.alpha(t), s.sigma(t)
    assert torch.allclose(a**2 + sg**2, torch.ones_like(t), atol=1e-14)
    assert torch.allclose(s.lam(t), torch.log(a / sg), atol=1e-12)
    assert torch.allclose(s.sigma_bar(t), sg / a, rtol=1e-12)
    assert bool((torch.diff(s.lam(t)) < 0).all()), "λ must decrease in t"


@pytest.mark.parametrize("name", ["linear", "cosine", "edm"])
def test_beta_is_minus_two_dlogalpha_dt(name):
    s = SCHEDULES[name]
    t = _times(s, 50)[1:-1].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(s.log_alpha(t).sum(), t)
    assert torch.allclose(s.beta(t.detach()), -2 * grad, rtol=1e-10)


def test_discrete_beta_is_piecewise_slope_and_knots_hit_the_table():
    s = SCHEDULES["discrete"]
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    acp = torch.cumprod(1 - betas, 0)
    t_n = s.t_from_step(torch.arange(1000))
    assert torch.allclose(s.alpha(t_n) ** 2, acp, rtol=1e-13)
    assert torch.allclose(s.model_time(t_n), torch.arange(1000, dtype=F64), atol=1e-9)
    mid = (t_n[:-1] + t_n[1:]) / 2
    slope = torch.diff(s.log_alpha(t_n)) / torch.diff(t_n)
    assert torch.allclose(s.beta(mid), -2 * slope, rtol=1e-10)


def test_linear_closed_forms():
    s = ds.VPLinear()
    t = torch.tensor([1e-3, 0.1, 0.5, 1.0], dtype=F64)
    expected = -0.25 * t**2 * (20 - 0.1) - 0.5 * t * 0.1
    assert torch.allclose(s.log_alpha(t), expected, atol=0)
    assert math.isclose(float(s.beta(0.5)), 0.1 + 0.5 * 19.9)


def test_cosine_matches_nichol_dhariwal():
    s = ds.VPCosine()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    f = lambda u: torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert torch.allclose(s.alpha(t) ** 2, f(t) / f(torch.zeros(1, dtype=F64)), rtol=1e-13)


def test_edm_is_sigma_bar_as_time():
    s = ds.EDM()
    t = torch.tensor([0.002, 1.0, 80.0], dtype=F64)
    assert torch.allclose(s.sigma_bar(t), t)
    assert torch.allclose(s.sigma_bar(t), s.sigma(t) / s.alpha(t), rtol=1e-13)


def test_bad_schedule_parameters_are_clear_errors():
    with pytest.raises(ds.ScheduleError, match="beta_min"):
        ds.VPLinear(beta_min=30.0)
    with pytest.raises(ds.ScheduleError, match="alphas_cumprod"):
        ds.DiscreteDDPM(alphas_cumprod=torch.tensor([0.9, 0.95]))
    with pytest.raises(ds.ScheduleError, match="betas"):
        ds.DiscreteDDPM(betas=torch.tensor([0.1, 1.5]))


# ---- identity by value ------------------------------------------------------------------------
import json  # noqa: E402

from diffsolve.errors import GridError  # noqa: E402
from diffsolve.schedules import from_config  # noqa: E402


@pytest.mark.parametrize("make", [
    lambda: ds.VPLinear(), lambda: ds.VPCosine(), lambda: ds.EDM(), lambda: ds.DiscreteDDPM(),
    lambda: ds.DiscreteDDPM(betas=torch.linspace(1e-4, 0.03, 1000, dtype=torch.float64)),
    lambda: ds.DiscreteDDPM(alphas_cumprod=torch.linspace(0.999, 0.01, 50, dtype=torch.float64)),
])
def test_config_round_trip_is_exact(make):
    s = make()
    r = from_config(json.loads(json.dumps(s.to_config())))
    assert r == s and hash(r) == hash(s) and r.fingerprint() == s.fingerprint()
    t = torch.linspace(s.t_min, s.t_max, 17, dtype=torch.float64)
    assert torch.equal(r.log_alpha(t), s.log_alpha(t))


def test_discrete_tables_differ_by_value_not_repr_length():
    a = ds.DiscreteDDPM()
    b = ds.DiscreteDDPM(betas=torch.linspace(1e-4, 0.03, 1000, dtype=torch.float64))
    assert a != b and a.num_train_steps == b.num_train_steps
    assert ds.VPLinear() == ds.VPLinear() and ds.VPLinear() != ds.VPLinear(beta_max=19.0)


def test_solve_refuses_a_grid_on_another_table():
    a = ds.DiscreteDDPM()
    b = ds.DiscreteDDPM(betas=torch.linspace(1e-4, 0.03, 1000, dtype=torch.float64))
    model = ds.EpsModel(lambda x, t: torch.zeros_like(x), a)
    with pytest.raises(GridError, match="same schedule"):
        ds.solve(ds.ode(model, "sigma"), torch.randn(2, 3), ds.grids.time(b, 4), "euler")


def test_from_config_errors_name_the_problem():
    with pytest.raises(ds.ScheduleError, match="unknown schedule type"):
        from_config({"type": "Nope"})
    with pytest.raises(ds.ScheduleError, match="does not fit VPLinear"):
        from_config({"type": "VPLinear", "rho": 3})
