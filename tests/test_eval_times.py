"""Decoupled evaluation times (Grid.t_eval): the network sees (x_i, t'_i) while the step arithmetic uses t_i."""

from __future__ import annotations

import json

import pytest
import torch

import diffsolve as ds
from diffsolve.errors import DiffsolveError, GridError, ScheduleError, SolverError
from diffsolve.schedules import F64
from diffsolve.solvers import SOLVERS

PROB = ds.problems.get("gmm-2d")
SCHED = PROB.default_schedule()
MODEL = PROB.model(SCHED, dtype=F64)
X = PROB.x_T(16, 0, SCHED)
NODE_SOLVERS = sorted(name for name, s in SOLVERS.items() if s.evaluates_at_nodes)


def shifted(grid: ds.grids.Grid, factor: float = 0.9) -> ds.grids.Grid:
    """The grid with every evaluation time but the first scaled by `factor` (inside the schedule)."""
    t_eval = grid.t.clone()
    t_eval[1:-1] = t_eval[1:-1] * factor
    return ds.grids.Grid(grid.schedule, grid.t, "shifted", t_eval)


def run(grid: ds.grids.Grid, solver: str, **options) -> torch.Tensor:
    method = ds.solvers.get_solver(solver)
    if method.stochastic_for(**options):  # ddpm, sde_dpmpp2m: the reverse SDE on a fixed path
        return ds.solve(ds.VPSDE(SCHED).reverse(MODEL), X, grid, solver, seed=0, **options).x
    variable = method.integrates.variables[0] if method.integrates.variables else "lambda"
    return ds.solve(ds.ode(MODEL, variable), X, grid, solver, **options).x


def test_the_node_evaluating_solvers_are_the_multistep_exponential_ones():
    assert {"ddim", "dpmpp2m", "dpmpp3m", "unipc", "deis", "ipndm", "ipndm_v"} <= set(NODE_SOLVERS)
    assert not {"heun", "rk4", "euler", "dpm2", "dpm3", "dpm_adaptive", "dopri5"} & set(NODE_SOLVERS)
    # Euler and Heun call the model at nodes only (twice per node for Heun): they take decoupled grids too
    takes = {name for name, s in SOLVERS.items() if s.accepts_decoupled}
    assert takes == set(NODE_SOLVERS) | {"euler", "heun"}


@pytest.mark.parametrize("solver", NODE_SOLVERS)
def test_eval_times_equal_to_the_step_times_change_nothing(solver):
    grid = ds.grids.quadratic(SCHED, 6)
    same = ds.grids.Grid(SCHED, grid.t, "same", grid.t.clone())
    assert torch.equal(run(grid, solver), run(same, solver))
    assert not torch.equal(run(grid, solver), run(shifted(grid), solver))


def test_ipndm_with_shifted_evaluations_by_hand():
    """x_{i+1} = α_{i+1}(x_i/α_i + h_i Σ_j c_j ε(x_{i−j}, t'_{i−j})), c = [1] then [3/2, −1/2], h_i = σ̄_{i+1} − σ̄_i."""
    grid = shifted(ds.grids.logsnr(SCHED, 3), 0.8)
    t, te = grid.t, grid.t_eval
    a, sb = SCHED.alpha(t), SCHED.sigma_bar(t)

    def eps(x, s):
        return PROB.eps(x, s, SCHED)

    x0 = X.to(F64)
    e0 = eps(x0, te[0])
    x1 = a[1] * (x0 / a[0] + (sb[1] - sb[0]) * e0)
    e1 = eps(x1, te[1])
    x2 = a[2] * (x1 / a[1] + (sb[2] - sb[1]) * (1.5 * e1 - 0.5 * e0))
    e2 = eps(x2, te[2])
    x3 = a[3] * (x2 / a[2] + (sb[3] - sb[2]) * (1.5 * e2 - 0.5 * e1))
    got = ds.solve(ds.ode(MODEL, "sigma"), X, grid, "ipndm", order=2).x
    torch.testing.assert_close(got, x3, rtol=1e-12, atol=1e-12)


def test_heun_with_shifted_evaluations_by_hand():
    """Heun in σ̄ on the DDIM ODE, the network at t'_i and t'_{i+1}: x̄_{i+1} = x̄_i + h_i/2 (ε_i + ε(α_{i+1}(x̄_i +
    h_i ε_i), t'_{i+1})), ε_i = ε(α_i x̄_i, t'_i); then the step to σ = 0: x̂0 = x̄_N − σ̄_N ε(α_N x̄_N, t'_N)."""
    grid = shifted(ds.grids.logsnr(SCHED, 3), 0.8)
    t, te = grid.t, grid.t_eval
    a, sb = SCHED.alpha(t), SCHED.sigma_bar(t)

    def eps(x, s):
        return PROB.eps(x, s, SCHED)

    xb = X.to(F64) / a[0]
    for i in range(grid.steps):
        h = sb[i + 1] - sb[i]
        e = eps(a[i] * xb, te[i])
        xb = xb + 0.5 * h * (e + eps(a[i + 1] * (xb + h * e), te[i + 1]))
    want = xb - sb[-1] * eps(a[-1] * xb, te[-1])
    got = ds.solve(ds.ode(MODEL, "sigma"), X, grid, "heun", to_zero=True).x
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("solver", ["midpoint", "dpm3", "rk4"])
def test_solvers_with_stages_refuse_a_decoupled_grid(solver):
    with pytest.raises(SolverError, match=r"decoupled evaluation times.*Grid\(schedule, grid.t\)"):
        run(shifted(ds.grids.quadratic(SCHED, 6)), solver)


def test_bad_eval_times_are_refused():
    t = ds.grids.quadratic(SCHED, 4).t
    with pytest.raises(GridError, match="t_eval has 3 times but the grid has 5"):
        ds.grids.Grid(SCHED, t, "x", t[:3])
    with pytest.raises(GridError, match="must be finite"):
        ds.grids.Grid(SCHED, t, "x", torch.full_like(t, float("nan")))
    with pytest.raises(ScheduleError, match="evaluation time range"):
        ds.grids.Grid(SCHED, t, "x", t * 2)


def test_a_decoupled_grid_round_trips_through_a_file_and_samples_the_same(tmp_path):
    grid = shifted(ds.grids.quadratic(SCHED, 5))
    path = ds.grids.save(grid, tmp_path / "g.json")
    assert json.loads(path.read_text())["eval_times"] == grid.t_eval.tolist()
    back = ds.grids.build(f"file:{path}", SCHED, 5)
    assert torch.equal(back.t, grid.t) and torch.equal(back.t_eval, grid.t_eval)
    sol = ds.sample(MODEL, X, solver="ipndm", grid=f"file:{path}")
    assert sol.nfe == 5 and torch.equal(sol.x, ds.solve(ds.ode(MODEL, "sigma"), X, grid, "ipndm").x)
    data = json.loads(path.read_text())
    data["eval_times"] = "soon"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(GridError, match="eval_times"):
        ds.grids.build(f"file:{tmp_path / 'bad.json'}", SCHED, 5)


def test_tuning_decouples_the_evaluation_times_where_the_solver_allows_it(tmp_path):
    kw = dict(train_seeds=[3], heldout_seeds=[4], n=64, candidates=16, max_evals=60)
    one = ds.grids.tune("gmm-2d", "ipndm", 1, **kw)  # one step: nothing to refine (node 0 is evaluated at t_max)
    assert one.chosen == "start" and not one.decoupled
    tuned = ds.grids.tune("gmm-2d", "ipndm", 4, order=3, validation_seeds=[], **kw)
    assert tuned.chosen == "steps+eval" and tuned.decoupled and tuned.optimizer == "lbfgs"
    SCHED.check_times(tuned.grid.t_eval)
    assert float(tuned.grid.t_eval[-1]) == float(tuned.grid.t[-1])  # the last node is never evaluated
    assert float(tuned.grid.t_eval[0]) == float(tuned.grid.t[0])  # the first is evaluated at t_max
    assert bool((tuned.grid.t_eval[1:-1] != tuned.grid.t[1:-1]).any())
    assert tuned.train_error <= tuned.start_train_error
    back = ds.tuning.TunedGrid.load(tuned.save(tmp_path / "t.json"), SCHED, tuned.fingerprint)
    assert torch.equal(back.grid.t_eval, tuned.grid.t_eval) and back.decoupled
    plain = ds.grids.tune("gmm-2d", "ipndm", 4, order=3, eval_times=False, **kw)
    assert not plain.decoupled and plain.grid.t_eval is None
    by_nm = ds.grids.tune("gmm-2d", "ipndm", 4, order=3, optimizer="nelder-mead", **kw)
    assert by_nm.train_error <= by_nm.start_train_error and by_nm.optimizer == "nelder-mead"
    with pytest.raises(DiffsolveError, match="eval_times=True needs a solver"):
        ds.grids.tune("gmm-2d", "heun", 4, eval_times=True, **kw)
    with pytest.raises(DiffsolveError, match="tuning optimizer"):
        ds.grids.tune("gmm-2d", "ipndm", 4, optimizer="adam", **kw)


def test_the_bench_tuned_spec_takes_eval_times_zero_or_one():
    from diffsolve.bench.tuned import settings

    assert settings(ds.grids.parse("tuned"))["eval_times"] == 1
    assert settings(ds.grids.parse("tuned:eval_times=0"))["eval_times"] == 0
    with pytest.raises(GridError, match="eval_times 0 or 1"):
        settings(ds.grids.parse("tuned:eval_times=2"))


def test_tuning_on_a_flow_schedule_gives_a_valid_decoupled_grid_there():
    flow = ds.Flow(shift=3.0)
    tuned = ds.grids.tune("gmm-2d", "ipndm", 4, order=3, schedule=flow, train_seeds=[3], heldout_seeds=None,
                          n=64, candidates=16, max_evals=60, validation_seeds=[])
    assert tuned.grid.schedule == flow and tuned.train_error <= tuned.start_train_error
    flow.check_times(tuned.grid.t)
    if tuned.decoupled:
        flow.check_times(tuned.grid.t_eval)
    x = PROB.x_T(8, 5, flow)
    sol = ds.solve(ds.ode(PROB.model(flow, dtype=F64), "sigma"), x, tuned.grid, "ipndm", order=3)
    assert sol.nfe == 4 and bool(torch.isfinite(sol.x).all())
