"""No fixed-step solver loop reads device values on the host (docs/design.md §4), checked on the CPU."""

import pytest
import torch

import diffsolve as ds
from diffsolve.syncguard import HostSyncError, SyncGuard, guard

S = ds.VPLinear()


def test_the_guard_catches_syncs():
    x = guard(torch.randn(3))
    y = (x * 2).sum()
    assert isinstance(y, SyncGuard)
    for read in (lambda: y.item(), lambda: bool(y > 0), lambda: float(y), lambda: (x > 0).nonzero(),
                 lambda: x.tolist(), lambda: x.cpu(), lambda: torch.isfinite(x).all().item()):
        with pytest.raises(HostSyncError):
            read()


def _sync_free_net(x, t):
    # the exact Gaussian ε, written without host reads: t is a tensor, coefficients stay tensors
    a = torch.exp(S.log_alpha(t.to(torch.float64))).to(x.dtype).reshape(-1, 1)
    s = torch.sqrt(1 - a * a)
    return s * (x - a * 0.5) / (a * a * 0.09 + s * s)


def test_fixed_step_loops_never_sync(fixed_step_solver):
    solver = ds.get_solver(fixed_step_solver)
    model = ds.EpsModel(_sync_free_net, S, check_finite=True)
    for variable in solver.integrates.variables or ("t", "sigma", "lambda"):
        dyn = ds.ode(model, variable)
        grid = ds.grids.logsnr(S, max(solver.min_steps, 6))
        x = guard(torch.randn(8, 4))
        out, traj = solver.integrate(dyn, x, grid, record=True)
        assert isinstance(out, SyncGuard) and len(traj) == grid.steps
    # the finiteness flags were collected without a sync; reading them afterwards is the one sync
    flags = torch.isfinite(torch.stack(model.finite_checks.sums).as_subclass(torch.Tensor))
    assert bool(flags.all())


def test_solve_checks_outputs_once_after_the_loop(gaussian_data):
    x = torch.randn(4, 2, dtype=torch.float64)
    sol = ds.solve(ds.ode(gaussian_data.model(S)), x, ds.grids.logsnr(S, 5), "heun")
    assert sol.nfe == 10
