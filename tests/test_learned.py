"""Learned multistep solvers: consistency of every reweighted step, the base method bit for bit when unlearned, learning
lowers the training objective, the file round trip and its refusals, counted NFE and fitted orders."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

import diffsolve as ds
from diffsolve.plan import dynamics_for, plan
from diffsolve.solvers.exp.base import nodes_of
from diffsolve.solvers.exp.coeffs import first_order
from diffsolve.solvers.exp.learned import LearnedMultistep, combo_steps, plan_sizes, position
from diffsolve.solvers.learned import LearnedSolver, network_fingerprint
from tests.learned_cases import ShiftedLearned
from tests.test_orders import FAST_STEPS, gmm64_fit

F64 = torch.float64
BASES = [("ipndm", {"order": 3}), ("ipndm_v", {"order": 4}), ("dpmpp2m", {}), ("dpmpp3m", {}), ("dpm3m", {}),
         ("unipc", {}), ("unipc", {"corrector": False, "variant": "bh1"}), ("deis", {})]
TINY = {"n": 32, "candidates": 12, "batch_size": 16, "max_evals": 6, "cache_dir": False, "progress": False}


@pytest.fixture(scope="module")
def gmm2d_setup():
    prob = ds.problems.get("gmm-2d")
    sched = prob.default_schedule()
    return prob, sched, prob.model(sched), prob.x_T(16, 3, sched)


def _random_deltas(solver: LearnedMultistep, grid: ds.grids.Grid, seed: int) -> list[list[float]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(k, generator=g, dtype=F64).tolist() for k in plan_sizes(solver.plan_on(grid))]


@pytest.mark.parametrize("base,options", BASES, ids=[f"{b}{o or ''}" for b, o in BASES])
def test_unlearned_is_the_base_method_bit_for_bit(base, options, gmm2d_setup):
    _, sched, model, x = gmm2d_setup
    for to_zero in (False, True):
        opts = {**options, "to_zero": to_zero}
        grid = ds.grids.quadratic(sched, 7)
        dyn = dynamics_for(model, base, opts)
        own = ds.solve(dyn, x, grid, base, **opts).x
        unlearned = LearnedMultistep(base, opts)
        zeros = LearnedMultistep(base, opts, [[0.0] * k for k in plan_sizes(unlearned.plan_on(grid))])
        assert torch.equal(ds.solve(dyn, x, grid, unlearned).x, own)
        assert torch.equal(ds.solve(dyn, x, grid, zeros).x, own)
        assert not zeros.learned and unlearned.order_for() == ds.get_solver(base).order_for(**opts)


def _first_order_weights(solver: LearnedMultistep, grid: ds.grids.Grid) -> list[float]:
    """The DDIM weight of the step each combination takes: node i → i + 1 (predictor), i − 1 → i (corrector)."""
    plan_ = solver.plan_on(grid)
    nodes = nodes_of(grid.points, bool(solver.learned_options.get("to_zero")))
    out = []
    for i, step in enumerate(plan_.steps):
        if step.correct is not None:
            out.append(first_order(solver.form, nodes[i - 1], nodes[i]).w[0])
        out.append(first_order(solver.form, nodes[i], nodes[i + 1]).w[0])
    return out


def _moments(solver: LearnedMultistep, grid: ds.grids.Grid) -> list[float]:
    """Σ_j w_j (u_j − u_i) of every combination, u the position in the base method's variable."""
    plan_ = solver.plan_on(grid)
    nodes = nodes_of(grid.points, False)
    sigma_bar = solver.integrates.variables == ("sigma",)
    return [sum(w * (position(nodes[i - j], sigma_bar) - position(nodes[i], sigma_bar)) for j, w in enumerate(c.w))
            for c, i in zip(plan_.combos(), combo_steps(plan_))]


@pytest.mark.parametrize("conditions", [1, 2])
@pytest.mark.parametrize("base,options", BASES, ids=[f"{b}{o or ''}" for b, o in BASES])
def test_every_reweighted_step_stays_consistent(base, options, conditions):
    sched = ds.VPLinear()
    grid = ds.grids.karras(sched, 8)  # far from uniform in λ and in σ̄
    unlearned = LearnedMultistep(base, options, None, conditions)
    learned = LearnedMultistep(base, options, _random_deltas(unlearned, grid, 7), conditions)
    own, new = unlearned.plan_on(grid).combos(), learned.plan_on(grid).combos()
    moved = sum(abs(a - b) for c, d in zip(own, new) for a, b in zip(c.w, d.w))
    free = max(len(c.w) for c in own) > conditions  # 2M's two outputs leave no freedom beyond two conditions
    assert moved > 0.1 if free else moved < 1e-12
    for c, d, f in zip(own, new, _first_order_weights(learned, grid)):
        assert d.a == c.a  # the exact linear part is kept
        assert abs(sum(d.w) - f) <= 1e-12 * abs(f)  # Σ_j w_ij = the first-order weight
    if conditions == 2:  # the base weights' first moment is kept too
        for m0, m1, c in zip(_moments(unlearned, grid), _moments(learned, grid), new):
            assert abs(m1 - m0) <= 1e-11 * max(abs(m0), sum(abs(w) for w in c.w))
    assert learned.order_for() == (1.0 if conditions == 1 else min(2.0, unlearned.order_for()))


@pytest.fixture(scope="module")
def learned_gmm2d():
    """ipndm order 3 learned on gmm-2d at NFE 5, tiny sizes."""
    return ds.solvers.learn("gmm-2d", "ipndm", 5, order=3, **TINY)


def test_learning_lowers_the_training_objective(learned_gmm2d):
    e = learned_gmm2d.errors
    assert e["learned"]["train"] < 0.9 * e["tuned"]["train"]  # the weights stage starts at the tuned grid (Δ = 0)
    assert learned_gmm2d.cost["by_stage"]["NFE 5: weights"] > 0
    assert learned_gmm2d.chosen in ("weights", e["tuned"]["stage"])
    assert learned_gmm2d.tuned_grid is not None and learned_gmm2d.nfe == 5 and learned_gmm2d.variable == "sigma"
    if learned_gmm2d.chosen == "weights":
        assert learned_gmm2d.solver.learned and e["heldout"] == e["learned"]["heldout"]
        for c, f in zip(learned_gmm2d.solver.plan_on(learned_gmm2d.grid).combos(),
                        _first_order_weights(learned_gmm2d.solver, learned_gmm2d.grid)):
            assert abs(sum(c.w) - f) <= 1e-12 * abs(f)  # consistency after learning


def test_the_file_round_trips_bit_for_bit(learned_gmm2d, gmm2d_setup, tmp_path):
    prob, sched, model, x = gmm2d_setup
    path = learned_gmm2d.save(tmp_path / "l.json")
    data = json.loads(path.read_text())
    assert data["kind"] == "learned" and data["fingerprint"] == prob.fingerprint() and data["network"] is None
    back = LearnedSolver.load(path, sched, prob.fingerprint())
    assert back.solver == learned_gmm2d.solver and torch.equal(back.grid.t, learned_gmm2d.grid.t)
    assert (back.grid.t_eval is None) == (learned_gmm2d.grid.t_eval is None)
    assert back.errors == json.loads(json.dumps(learned_gmm2d.errors))
    a = ds.sample(model, x, solver=learned_gmm2d)
    b = ds.sample(model, x, solver=f"file:{path}")
    c = ds.solve(ds.ode(model, "sigma"), x, learned_gmm2d.grid, learned_gmm2d.solver)
    assert torch.equal(a.x, b.x) and torch.equal(a.x, c.x) and a.nfe == b.nfe == 5
    for combo, stored in zip(back.solver.plan_on(back.grid).combos(), data["weights"]["combos"]):
        assert [float(w) for w in combo.w] == stored["w"]


def test_a_learned_file_is_refused_for_another_model_or_schedule(learned_gmm2d, gmm2d_setup, tmp_path):
    prob, sched, model, x = gmm2d_setup
    path = learned_gmm2d.save(tmp_path / "l.json")
    spec = f"file:{path}"
    base = LearnedMultistep("ipndm", {"order": 3})
    five_steps = LearnedMultistep("ipndm", {"order": 3}, _random_deltas(base, ds.grids.logsnr(sched, 5), 3))
    cases = [
        (lambda: plan(model, spec, fingerprint="GaussianMixture:another"), "learned for problem fingerprint"),
        (lambda: ds.sample(prob.model(ds.VPCosine()), x, solver=spec), "was learned on schedule"),
        (lambda: ds.sample(model, x, solver=spec, nfe=6), "learned for nfe=5, not nfe=6"),
        (lambda: ds.sample(model, x, solver=spec, grid="logsnr"), "brings its own grid"),
        (lambda: ds.sample(model, x, solver=spec, order=2), "was learned with other options: order=2"),
        (lambda: ds.sample(model, x, solver="ipndm", nfe=5, grid=spec), "is a learned solver's file"),
        (lambda: ds.solve(ds.ode(model, "sigma"), x, ds.grids.logsnr(sched, 6), five_steps),
         "was learned for another grid"),
    ]
    for call, words in cases:
        with pytest.raises(ds.DiffsolveError, match=words):
            call()
    with pytest.raises(ds.DiffsolveError, match="not a learned solver's file"):
        ds.sample(model, x, solver=f"file:{ds.grids.save(ds.grids.logsnr(sched, 5), tmp_path / 'g.json')}")
    data = json.loads(path.read_text())  # a weight far beyond what learning makes (|Δ| of order 1): the file is named
    data["weights"]["deltas"][0][0] = 1e300
    (tmp_path / "huge.json").write_text(json.dumps(data))
    with pytest.raises(ds.DiffsolveError, match=r"huge.json': weights.deltas\[0\]\[0\] must be .* <= 1000"):
        ds.sample(model, x, solver=f"file:{tmp_path / 'huge.json'}")


class TimedLinear(nn.Module):
    """ε(x, t) = (1 + t)·(W x + b)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * (1 + t[:, None].to(x.dtype))


def test_a_learned_file_is_refused_for_another_network(tmp_path):
    """The file records a hash of the network's weights: equal numbers pass (float32 → float64 is exact), others not."""
    torch.manual_seed(0)
    net, other = TimedLinear(), TimedLinear()
    sched = ds.VPLinear()
    grid = ds.grids.logsnr(sched, 4)
    solver = LearnedMultistep("dpmpp2m", {}, _random_deltas(LearnedMultistep("dpmpp2m"), grid, 2))
    learned = LearnedSolver(solver, grid, 4, "lambda", network=network_fingerprint(net))
    spec = f"file:{learned.save(tmp_path / 'l.json')}"
    x = torch.randn(5, 3)
    assert ds.sample(ds.EpsModel(net, sched), x, solver=spec).nfe == 4
    assert ds.sample(ds.EpsModel(copy.deepcopy(net).double(), sched), x.double(), solver=spec).nfe == 4
    with pytest.raises(ds.SolverError, match="learned for a network with weights fingerprint"):
        ds.sample(ds.EpsModel(other, sched), x, solver=spec)
    assert network_fingerprint(lambda x, t: x) is None and network_fingerprint(net) != network_fingerprint(other)


def test_nfe_is_counted_with_a_step_to_zero(gmm2d_setup, tmp_path):
    _, sched, model, x = gmm2d_setup
    grid = ds.grids.logsnr(sched, 5)
    base = LearnedMultistep("unipc", {"to_zero": True})
    solver = LearnedMultistep("unipc", {"to_zero": True}, _random_deltas(base, grid, 1))
    path = LearnedSolver(solver, grid, 6, "lambda").save(tmp_path / "z.json")
    sol = ds.sample(model, x, solver=f"file:{path}")
    assert sol.nfe == 6 and "nfe_requested" not in sol.info
    assert torch.equal(sol.x, ds.solve(ds.ode(model, "lambda"), x, grid, solver).x)


@pytest.mark.parametrize("base,options", [("dpmpp2m", {}), ("unipc", {}), ("ipndm", {"order": 3})])
def test_unlearned_order_is_the_base_methods(gmm64_case, order_of, base, options):
    measured, declared, errors = gmm64_fit(order_of, gmm64_case, LearnedMultistep(base, options), {}, None,
                                           FAST_STEPS)
    assert declared == ds.get_solver(base).order_for(**options)
    assert abs(measured - declared) <= 0.3, f"{base}: fitted {measured:.2f}, declared {declared} ({errors})"


@pytest.mark.parametrize("base,options", [("dpmpp2m", {}), ("unipc", {}), ("ipndm", {"order": 3}), ("deis", {})])
def test_learned_orders_are_what_the_conditions_keep(gmm64_case, order_of, base, options):
    """Fixed Δ at every grid size (tests/learned_cases.py): consistency alone gives order 1; the first moment kept
    gives at least 2."""
    one, declared, errors = gmm64_fit(order_of, gmm64_case, ShiftedLearned(base, options), {}, None, FAST_STEPS)
    assert declared == 1.0 and abs(one - 1.0) <= 0.3, (base, one, errors)
    two, declared, errors = gmm64_fit(order_of, gmm64_case, ShiftedLearned(base, options, conditions=2), {}, None,
                                      FAST_STEPS)
    assert declared == 2.0 and two >= declared - 0.3, (base, two, errors)


def test_bad_inputs_are_refused_with_the_fix():
    for call, words in [
        (lambda: LearnedMultistep("heun"), "has no learnable multistep weights"),
        (lambda: LearnedMultistep("ddim"), "has no learnable multistep weights"),
        (lambda: LearnedMultistep("dpmpp2m", {}, None, 3), "conditions must be 1"),
        (lambda: ds.solvers.learn("gmm-2d", "heun", 4, **TINY), "has no learnable multistep weights"),
        (lambda: ds.solvers.learn("gmm-2d", "ipndm", 4, method="dp", **TINY), "method='dp'"),
    ]:
        with pytest.raises(ds.DiffsolveError, match=words):
            call()


def test_learning_starts_from_tunes_grid_and_costs_less_than_twice_the_tuning():
    """The grid stages are tune's (same objective, same draws: the same tuned grid, bit for bit); the weights stage
    spends at most LEARN_SHARE of what they spent, so learning costs < 2× tuning (forward sample-evaluations)."""
    sizes = {k: v for k, v in TINY.items() if k != "max_evals"}  # the default budgets, on few draws
    learned = ds.solvers.learn("gmm-2d", "ipndm", 5, order=3, **sizes)
    tuned = ds.grids.tune("gmm-2d", "ipndm", 5, order=3, **sizes)
    assert torch.equal(learned.tuned_grid.t, tuned.grid.t) and torch.equal(learned.tuned_grid.t_eval, tuned.grid.t_eval)
    assert learned.learning["objective"] == "log" and learned.learning["grid_objective"] == "mean"
    assert tuned.cost_samples < learned.cost["samples"] < 2 * tuned.cost_samples
    assert learned.errors["tuned"]["train"] == tuned.train_error
