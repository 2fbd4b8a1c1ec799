"""Gradients through the solver: one coefficient formula for the float plan (unchanged, bit for bit) and the
differentiable one; autograd equals finite differences for every one-evaluation-per-node solver, decoupled
evaluation times included; the weighted step is a replaceable, differentiable object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from plan_checksums import plan_checksums

import diffsolve as ds
from diffsolve.plan import dynamics_for
from diffsolve.points import differentiable_points
from diffsolve.solvers import get_solver
from diffsolve.solvers.exp.coeffs import Combo
from diffsolve.solvers.exp.weighted import solve_weighted, weighted_plan, with_combos
from diffsolve.tuning.span import Span

F64 = torch.float64
NODE_SOLVERS = [("ddim", {}), ("dpmpp2m", {}), ("dpmpp3m", {}), ("dpm2m", {}), ("dpm3m", {}), ("deis", {}),
                ("unipc", {}), ("unipc", {"form": "noise", "variant": "bh1", "order": 2}), ("ipndm", {"order": 3}),
                ("ipndm_v", {})]


def test_the_float_plans_equal_those_before_the_tensor_path():
    """Every plan coefficient of 1920 (schedule, grid, solver, options) cases against the code before the coefficient
    formulas took tensors (4cc9133; tests/plan_checksums.py says how the file was written). On the CPU that wrote it
    they agree bit for bit; elsewhere the grids' times differ in the last bit, so the bound is round-off's."""
    golden = json.loads((Path(__file__).parent / "data" / "plans_4cc9133.json").read_text())
    now = plan_checksums()
    assert now.keys() == golden.keys()
    off = {k: abs(now[k][0] - s) / a for k, (s, a) in golden.items() if abs(now[k][0] - s) > 1e-13 * a}
    assert not off, f"plans that moved by more than round-off (relative to Σ|u c|): {off}"


@pytest.fixture(scope="module")
def gmm():
    prob = ds.problems.get("gmm-2d")
    sched = prob.default_schedule()
    return prob.model(sched), prob.x_T(8, 0, sched), sched


@pytest.mark.parametrize("name,opts", NODE_SOLVERS)
def test_the_tensor_plan_and_its_solve_equal_the_float_ones(gmm, name, opts):
    model, x, sched = gmm
    grid = ds.grids.make("quadratic", sched, 6)
    t_eval = grid.t.clone()
    t_eval[1:-1] *= 0.97
    decoupled = ds.grids.Grid(sched, grid.t, "shifted", t_eval)
    dyn = dynamics_for(model, name, opts)
    solver = get_solver(name)
    form = solver.form_of(dict(opts))
    float_plan = solver.plan(dyn, grid, form, **{k: v for k, v in opts.items() if k != "form"})
    tensor_plan, _ = weighted_plan(name, differentiable_points(sched, grid.t), opts)
    assert tensor_plan.weighted and not float_plan.weighted
    for a, b in zip(float_plan.combos(), tensor_plan.combos()):
        assert b.a == pytest.approx(a.a, rel=1e-13, abs=1e-15)
        assert [float(w) for w in b.w] == pytest.approx(list(a.w), rel=1e-12, abs=1e-14)
    for g in (grid, decoupled):
        want = ds.solve(dyn, x, g, name, **opts).x
        eval_points = None if g.t_eval is None else differentiable_points(sched, g.t_eval)
        got = solve_weighted(dyn, x, differentiable_points(sched, g.t), name, eval_points=eval_points, **opts)
        assert torch.allclose(got, want, rtol=0, atol=1e-12)


def _loss(model, x, sched, name, opts, params, steps, checkpoint=False):
    span = Span(sched, steps)
    points, eval_points = span.points(params)
    out = solve_weighted(dynamics_for(model, name, opts), x, points, name, eval_points=eval_points,
                         checkpoint=checkpoint, **opts)
    return (out**2).mean()


@pytest.mark.parametrize("name,opts", NODE_SOLVERS)
def test_autograd_equals_central_differences_with_decoupled_evaluation_times(gmm, name, opts):
    model, x, sched = gmm
    steps = 5
    params = torch.cat([torch.linspace(-0.3, 0.4, steps - 1, dtype=F64), 0.1 * torch.ones(steps - 1, dtype=F64)])
    leaf = params.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_loss(model, x, sched, name, opts, leaf, steps), leaf)
    h, fd = 1e-6, torch.zeros_like(params)
    with torch.no_grad():
        for i in range(params.numel()):
            e = torch.zeros_like(params)
            e[i] = h
            fd[i] = (_loss(model, x, sched, name, opts, params + e, steps)
                     - _loss(model, x, sched, name, opts, params - e, steps)) / (2 * h)
    assert float((grad - fd).abs().max()) <= 1e-6 * float(fd.abs().max())


def test_checkpointing_changes_neither_value_nor_gradient_and_recomputes_each_call(gmm):
    model, x, sched = gmm
    entries = [0]

    def net(x_in, t):
        entries[0] += 1
        return model.net(x_in, t)
    counted = ds.EpsModel(net, sched, time_input=model.time_input_fn)
    params = torch.tensor([0.2, -0.1, 0.3, 0.05, 0.0, -0.02], dtype=F64)
    out = []
    for checkpoint in (False, True):
        leaf = params.clone().requires_grad_(True)
        entries[0] = 0
        loss = _loss(counted, x, sched, "ipndm", {"order": 3}, leaf, 4, checkpoint)
        forward = entries[0]
        (grad,) = torch.autograd.grad(loss, leaf)
        out.append((loss.detach(), grad, forward, entries[0] - forward))
    assert torch.equal(out[0][0], out[1][0]) and torch.allclose(out[0][1], out[1][1], rtol=1e-14, atol=0)
    assert out[0][2] == out[1][2] == 4 and out[0][3] == 0 and out[1][3] == 4  # one recomputation per call


def test_the_last_steps_weights_are_replaceable_and_the_end_state_is_linear_in_them(gmm):
    # x_K = a·x_{K−1} + Σ_j w_j m_j: ∂x_K/∂w_j = m_j exactly, and the same combinations change nothing
    model, x, sched = gmm
    LOF = {"lower_order_final": False}  # a second-order last step: two weights
    points = differentiable_points(sched, ds.grids.make("logsnr", sched, 4).t)
    dyn = dynamics_for(model, "dpmpp2m", LOF)
    plan, _ = weighted_plan("dpmpp2m", points, LOF)
    assert torch.equal(solve_weighted(dyn, x, points, "dpmpp2m", plan=with_combos(plan, plan.combos()), **LOF),
                       solve_weighted(dyn, x, points, "dpmpp2m", plan=plan, **LOF))
    combos = plan.combos()
    w = torch.stack([torch.as_tensor(v, dtype=F64) for v in combos[-1].w]).detach().requires_grad_(True)
    combos[-1] = Combo(combos[-1].a, tuple(w))
    outputs = []

    def capture(fn):
        def call(x_i, p):
            outputs.append(fn(x_i, p))
            return outputs[-1]
        return call
    out = solve_weighted(dyn, x, points, "dpmpp2m", plan=with_combos(plan, combos), wrap=capture, **LOF)
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    (grad,) = torch.autograd.grad((out * probe).sum(), w)
    want = torch.stack([(m.detach() * probe).sum() for m in (outputs[-1], outputs[-2])])
    assert torch.allclose(grad, want, rtol=1e-12, atol=0)
    with pytest.raises(ds.errors.SolverError, match="cannot take"):
        with_combos(plan, combos[:-1])


def test_solvers_without_a_differentiable_plan_are_refused():
    with pytest.raises(ds.errors.SolverError, match="no differentiable plan"):
        weighted_plan("heun", differentiable_points(ds.VPLinear(), torch.tensor([1.0, 0.5, 0.001], dtype=F64)), {})
