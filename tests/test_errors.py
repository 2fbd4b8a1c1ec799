"""Every wrong input of docs/design.md §5 raises an error that names the value and the fix."""

import pytest
import torch

import diffsolve as ds

S = ds.VPLinear()


def _model(net=None):
    return ds.EpsModel(net or (lambda x, t: 0.1 * x), S)


def _x(dtype=torch.float64):
    return torch.randn(4, 3, dtype=dtype)


def test_unknown_solver_lists_the_valid_names():
    with pytest.raises(ds.SolverError, match=r"unknown solver 'hune'.*valid solver names are:.*heun"):
        ds.solve(ds.ode(_model()), _x(), ds.grids.logsnr(S, 4), "hune")


def test_nfe_budget_below_what_a_solver_needs():
    with pytest.raises(ds.SolverError, match=r"NFE budget of 3 is below what solver 'rk4' needs: at least 4"):
        ds.sample(_model(), _x(), solver="rk4", nfe=3)


def test_unknown_option_names_the_accepted_ones():
    with pytest.raises(ds.SolverError, match=r"takes no option\(s\) rtol; it takes: to_zero"):
        ds.solve(ds.ode(_model()), _x(), ds.grids.logsnr(S, 4), "heun", rtol=1e-3)


def test_ode_solver_on_an_sde_and_back():
    with pytest.raises(ds.SolverError, match="is an SDE; use an SDE solver"):
        ds.solve(ds.VPSDE(S).reverse(_model()), _x(), ds.grids.logsnr(S, 4), "heun")
    with pytest.raises(ds.SolverError, match="is an ODE; use an ODE solver"):
        ds.solve(ds.ode(_model()), _x(), ds.grids.logsnr(S, 4), "euler_maruyama")


def test_grid_in_the_wrong_direction():
    with pytest.raises(ds.GridError, match=r"needs grid times decreasing.*reverse the grid"):
        ds.solve(ds.ode(_model()), _x(), ds.grids.custom(S, [0.01, 0.5, 1.0]), "euler")


def test_grid_on_another_schedule():
    with pytest.raises(ds.GridError, match="build the grid from the same schedule"):
        ds.solve(ds.ode(_model()), _x(), ds.grids.logsnr(ds.VPCosine(), 4), "euler")


def test_wrong_output_shape_names_both_shapes():
    with pytest.raises(ds.ModelError, match=r"returned \(4, 2\) for an input of shape \(4, 3\)"):
        ds.solve(ds.ode(_model(lambda x, t: x[:, :2])), _x(), ds.grids.logsnr(S, 4), "euler")


def test_nan_from_the_model_names_the_call_and_time():
    calls = []

    def net(x, t):
        calls.append(1)
        return x * float("nan") if len(calls) == 3 else 0.1 * x

    msg = r"NaN or Inf \(its sum is not finite\) at network call 3 \(t = 0\.\d+\).*check_finite=False"
    with pytest.raises(ds.ModelError, match=msg):
        ds.solve(ds.ode(_model(net)), _x(), ds.grids.logsnr(S, 4), "euler")


def test_dtype_mismatch_with_the_network():
    net = torch.nn.Linear(3, 3)  # float32 parameters
    model = ds.EpsModel(lambda x, t: net(x), S)
    model.net = net
    msg = r"dtype torch.float64 but the network.s parameters have dtype torch.float32"
    with pytest.raises(ds.ModelError, match=msg):
        ds.solve(ds.ode(model), _x(torch.float64), ds.grids.logsnr(S, 4), "euler")


def test_device_mismatch_with_the_network():
    model = ds.EpsModel(torch.nn.Linear(3, 3, device="meta"), S)  # a network on another device than the state
    x = torch.randn(4, 3)
    with pytest.raises(ds.ModelError, match=r"on cpu but the network's parameters are on meta; move one"):
        ds.solve(ds.ode(model), x, ds.grids.logsnr(S, 4), "euler")
    with pytest.raises(ds.ModelError, match=r"state is on the 'meta' device \(no data\)"):  # a state without data
        ds.solve(ds.ode(ds.EpsModel(torch.nn.Linear(3, 3), S)), torch.empty(4, 3, device="meta"),
                 ds.grids.logsnr(S, 4), "euler")


def test_non_float_state():
    with pytest.raises(ds.ModelError, match="floating-point tensor.*torch.int64"):
        ds.solve(ds.ode(_model()), torch.zeros(4, 3, dtype=torch.long), ds.grids.logsnr(S, 4), "euler")


def test_unknown_variable_and_prediction():
    with pytest.raises(ds.DiffsolveError, match="valid ones are t, sigma, lambda"):
        ds.DDIMODE(_model(), "logsnr")
    with pytest.raises(ds.ModelError, match="valid ones are eps, x0, v, score"):
        ds.wrap(lambda x, t: x, S, "epsilon")


def test_model_time_outside_the_schedule():
    with pytest.raises(ds.ScheduleError, match="outside the schedule"):
        ds.grids.logsnr(S, 4, t_end=0.0)


def test_errors_are_raised_before_any_network_call(gaussian_data):
    data = gaussian_data
    with pytest.raises(ds.SolverError):
        ds.solve(ds.ode(data.model(S)), _x(), ds.grids.logsnr(S, 4), "rk4", atol=1)
    assert data.calls == 0
