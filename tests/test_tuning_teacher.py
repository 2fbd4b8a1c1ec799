"""The teacher (measured, cached per model and draws, invalidated by a weight change), several NFEs at once, the
cost ledger, and the errors and notices of tuning."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import diffsolve as ds
from diffsolve.tuning import TuningError, TuningNotice, tune
from diffsolve.tuning.ledger import Ledger, OutOfTime
from diffsolve.tuning.teacher import SCHEMES, Teacher, solve_teacher

F64 = torch.float64
SMALL = dict(train_seeds=[3], heldout_seeds=[4], n=16, candidates=8, max_evals=4, batch_size=8, progress=False)


class TinyNet(nn.Module):
    """ε(x, t) = x + 0.3·tanh(linear layer on (x, t)): a network with weights, float64, ε ≈ x at the noisy end as
    for a trained one."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2, dtype=F64)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[0.7, 0.0, 0.1], [0.0, 0.6, -0.1]], dtype=F64))
            self.lin.bias.zero_()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x + 0.3 * torch.tanh(self.lin(torch.cat([x, t.to(x.dtype)[:, None].expand(x.shape[0], 1)], 1)))


def test_the_teacher_records_its_own_evaluations_and_its_error_is_measured(tmp_path):
    prob = ds.problems.get("gmm-2d")
    sched = prob.default_schedule()
    model = prob.model(sched)
    teacher = Teacher(nfe=28, candidates=8)  # UniPC on a λ-uniform grid (scheme 0)
    x = prob.x_T(16, 3, sched)
    rec = solve_teacher(model, teacher, x, record=True)
    grid = teacher.grid(sched)
    sol = ds.solve(ds.ode(model, "lambda"), x, grid, "unipc", order=3, lower_order_final=False, trajectory=True)
    assert torch.equal(rec.end, sol.x) and torch.equal(rec.path[-1], sol.x) and len(rec.path) == 8
    points = [grid.points[i] for i in teacher.nodes()[:-1]]
    eps = torch.stack([model.eps_at(s, p) for s, p in zip(rec.path[:-1], points)])
    assert torch.allclose(rec.eps, eps, rtol=0, atol=1e-12)  # ε at exactly the states recorded
    # UniPC evaluates each state before correcting it: the recorded states are the trajectory's to its local error
    assert float((rec.path - sol.trajectory[teacher.nodes()]).abs().max()) < 0.05
    tuned = tune(prob, "dpmpp2m", 4, teacher_nfe=28, cache_dir=tmp_path, **SMALL)
    errors = {}
    for scheme, (solver, _, _) in enumerate(SCHEMES):  # the more accurate scheme on the subset is the teacher
        own = solve_teacher(model, Teacher(28, 8, scheme), x[:8], record=False).end
        finer = solve_teacher(model, Teacher(56, 8, scheme), x[:8], record=False).end
        errors[solver] = math.sqrt(float(torch.mean((own - finer) ** 2)))
    assert tuned.teacher["nfe"] == 28 and tuned.teacher["solver"] == min(errors, key=errors.get)
    assert tuned.teacher["error"] == pytest.approx(min(errors.values()), rel=1e-12)


def test_teachers_are_reused_across_solvers_and_runs_and_recomputed_after_a_weight_change(tmp_path):
    net = TinyNet()  # teacher_tol fixes the teacher's level up front, whatever the solver and NFE reach
    model = ds.EpsModel(net, ds.VPLinear())
    first = tune(model, "ipndm", 4, shape=(2,), cache_dir=tmp_path, teacher_tol=1e-3, **SMALL)
    teacher_stages = [k for k in first.cost_by_stage if "teacher" in k]
    assert first.gradient == "autograd" and all(first.cost_by_stage[k] > 0 for k in teacher_stages)
    files = sorted(tmp_path.glob("teacher-*.pt"))
    again = tune(model, "dpmpp2m", 5, shape=(2,), cache_dir=tmp_path, teacher_tol=1e-3, **SMALL)  # another solver
    assert sorted(tmp_path.glob("teacher-*.pt")) == files
    assert all(again.cost_by_stage.get(k, 0) == 0 for k in teacher_stages)
    with torch.no_grad():
        net.lin.weight[0, 0] += 0.01
    changed = tune(model, "ipndm", 4, shape=(2,), cache_dir=tmp_path, teacher_tol=1e-3, **SMALL)
    assert changed.fingerprint != first.fingerprint and all(changed.cost_by_stage[k] > 0 for k in teacher_stages)
    assert len(list(tmp_path.glob("teacher-*.pt"))) == 2 * len(files)
    assert all(p.requires_grad for p in net.parameters())  # frozen during tuning only


def test_several_nfes_at_once_equal_single_runs_and_share_the_teacher(tmp_path):
    both = tune("gmm-2d", "ipndm", [4, 5], cache_dir=tmp_path / "a", order=2, **SMALL)
    assert [t.nfe for t in both] == [4, 5] and all(t.shared_cost for t in both)
    for tuned in both:
        alone = tune("gmm-2d", "ipndm", tuned.nfe, cache_dir=tmp_path / "b", order=2, **SMALL)
        assert torch.equal(alone.grid.t, tuned.grid.t) and alone.train_error == tuned.train_error
        assert (alone.grid.t_eval is None) == (tuned.grid.t_eval is None)
        if alone.grid.t_eval is not None:
            assert torch.equal(alone.grid.t_eval, tuned.grid.t_eval)
    teacher = next(k for k in both[0].cost_by_stage if k.startswith("teacher"))
    assert both[0].cost_by_stage[teacher] == both[1].cost_by_stage[teacher] > 0  # solved once, counted in each


def test_the_cost_is_counted_per_stage_in_sample_evaluations(tmp_path):
    tuned = tune("gmm-2d", "dpmpp2m", 4, cache_dir=tmp_path, **SMALL)
    by = tuned.cost_by_stage
    assert by["NFE 4: starts"] == 5 * 4 * 16  # DP grid and four standard grids, 4 calls on 16 draws each
    steps = tuned.teacher["nfe"]  # 7·2^L steps on the second chunk's 8 draws: the first is the check subset, solved
    assert by[f"teacher {tuned.teacher['solver']} N={steps}"] == steps * 8  # and cached while the level was chosen
    assert sum(v for k, v in by.items() if k.startswith("teacher check")) % (7 * 8) == 0  # the ladder, on 8 draws
    assert tuned.cost_samples == sum(by.values()) and tuned.cost_vjp_samples > 0
    assert tuned.evals > 0 and tuned.estimated_samples > 0 and not any("held-out" in k for k in by)


def test_a_network_without_autograd_falls_back_to_finite_differences_with_a_notice(tmp_path):
    base = ds.problems.get("gmm-2d").model(ds.VPLinear())

    def outside_torch(x, t):  # computed in numpy: no graph
        return torch.from_numpy(np.asarray(base.net(x.detach(), t.detach()).numpy()))
    model = ds.EpsModel(outside_torch, ds.VPLinear(), time_input=base.time_input_fn)
    with pytest.warns(TuningNotice, match="finite-difference gradients"):
        tuned = tune(model, "dpmpp2m", 4, shape=(2,), cache_dir=tmp_path, **SMALL)
    assert tuned.gradient == "fd" and tuned.train_error <= tuned.start_train_error
    with pytest.raises(TuningError, match="gradient='autograd' is not possible.*no autograd graph"):
        tune(model, "dpmpp2m", 4, shape=(2,), cache_dir=tmp_path, gradient="autograd", **SMALL)


class NanBelow(torch.autograd.Function):
    """Identity in t whose backward pass is NaN below t = 0.3 (finite where the probe looks, t = 0.5)."""

    @staticmethod
    def forward(ctx, t):  # noqa: ANN001, ANN205
        ctx.save_for_backward(t)
        return t.clone()

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        (t,) = ctx.saved_tensors
        return torch.where(t < 0.3, torch.full_like(g, float("nan")), g)


def test_a_non_finite_gradient_is_an_error_naming_the_fix(tmp_path):
    base = ds.problems.get("gmm-2d").model(ds.VPLinear())
    model = ds.EpsModel(lambda x, t: base.net(x, NanBelow.apply(t)), ds.VPLinear(), time_input=base.time_input_fn)
    with pytest.raises(TuningError, match="gradient is not finite.*gradient='fd'"):
        tune(model, "ipndm", 4, shape=(2,), cache_dir=tmp_path, **SMALL)


def test_a_teacher_above_its_bound_and_an_unreachable_teacher_tol_are_errors(tmp_path):
    with pytest.raises(TuningError, match="teacher's measured error .* above 0.1× the training error.*teacher_nfe=8"):
        tune("gmm-2d", "ipndm", 4, teacher_nfe=4, cache_dir=tmp_path, **SMALL)
    with pytest.raises(TuningError, match="teacher_tol=1e-30 is not reached"):
        tune("gmm-2d", "ipndm", 4, teacher_tol=1e-30, cache_dir=tmp_path, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TuningNotice)  # a sufficient teacher: no notice
        tuned = tune("gmm-2d", "ipndm", 4, teacher_tol=1e-3, cache_dir=tmp_path, **SMALL)
    assert tuned.teacher["error"] <= 1e-3


def test_a_budget_that_cannot_be_met_is_refused_before_any_work(tmp_path):
    with pytest.raises(TuningError, match="max_seconds=1e-09 cannot be met.*raise max_seconds"):
        tune("gmm-2d", "ipndm", 4, max_seconds=1e-9, cache_dir=tmp_path, **SMALL)
    assert not list(tmp_path.glob("teacher-*.pt"))
    with pytest.raises(ds.errors.DiffsolveError, match="nfe must be a positive integer or a list"):
        tune("gmm-2d", "ipndm", [4, 4], **SMALL)


def test_max_seconds_stops_at_the_best_grid_so_far_and_says_so(tmp_path, monkeypatch):
    ticks = {"n": 0}
    original = Ledger.tick

    def tick(self):  # the deadline passes during the first refinement
        original(self)
        if "steps" in self.stage:
            ticks["n"] += 1
            if ticks["n"] >= 3:
                raise OutOfTime
    monkeypatch.setattr(Ledger, "tick", tick)
    monkeypatch.setattr(Ledger, "out_of_time", lambda self: ticks["n"] >= 3)
    with pytest.warns(TuningNotice, match="stopped at max_seconds"):
        tuned = tune("gmm-2d", "ipndm", 4, cache_dir=tmp_path, **{**SMALL, "max_evals": 50})
    assert tuned.stopped == "max_seconds" and tuned.train_error <= tuned.start_train_error


def test_the_teacher_is_the_more_accurate_scheme_at_the_first_level_that_is_accurate_enough():
    from types import SimpleNamespace

    from diffsolve.tuning.search import choose_teacher

    errors = {0: [1.0, 0.5, 0.1, 0.05], 1: [0.2, 0.15, 1e-4, 1e-5]}  # per scheme, per level

    class Session:  # what choose_teacher asks of a session
        schedule, dtype = ds.VPLinear(), torch.float64
        ledger = SimpleNamespace(tick=lambda: None)

        def ladder(self, scheme):
            return [Teacher(7 * 2**level, 8, scheme) for level in range(4)]

        def error(self, teacher):
            return errors[teacher.scheme][{7: 0, 14: 1, 28: 2, 56: 3}[teacher.nfe]]

    s = SimpleNamespace(teacher_nfe=None, teacher_tol=0.01, method="dp+refine")
    fit = SimpleNamespace(span=SimpleNamespace(steps=4))
    # level 0: scheme 1 is better and scheme 0, 5× worse, is measured no further; level 2 reaches the tolerance
    assert choose_teacher(Session(), s, fit) == Teacher(28, 8, 1)
    assert choose_teacher(Session(), SimpleNamespace(teacher_nfe=7, teacher_tol=None, method="dp"), fit) == Teacher(
        7, 8, 1)  # a fixed teacher_nfe: the more accurate scheme at level 0
