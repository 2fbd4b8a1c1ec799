"""The automatic defaults (issue 12): lower_order_final=None and DPM-Solver++(3M) variant=None resolve to the
named choices by step count — bit-identical to passing them — and fixed choices stay available by name."""

from __future__ import annotations

import pytest
import torch

import diffsolve as ds
from diffsolve.schedules import F64
from diffsolve.solvers.exp.base import AUTO_LOWER_ORDER_FINAL_BELOW
from diffsolve.solvers.exp.multistep import AUTO_3M_TAYLOR_FROM

PROB = ds.problems.get("gmm-2d")
SCHED = PROB.default_schedule()
MODEL = PROB.model(SCHED, dtype=F64)
X = PROB.x_T(8, 0, SCHED)


def run(solver: str, steps: int, **options) -> torch.Tensor:
    variable = "sigma" if solver.startswith("ipndm") else "lambda"
    return ds.solve(ds.ode(MODEL, variable), X, ds.grids.logsnr(SCHED, steps), solver, **options).x


@pytest.mark.parametrize("solver", ["dpmpp2m", "dpm2m", "deis", "unipc", "dpmpp3m", "dpm3m"])
def test_lower_order_final_is_on_below_the_threshold_and_off_from_it(solver):
    below, at = AUTO_LOWER_ORDER_FINAL_BELOW - 1, AUTO_LOWER_ORDER_FINAL_BELOW
    assert torch.equal(run(solver, 8), run(solver, 8, lower_order_final=True))
    assert torch.equal(run(solver, below), run(solver, below, lower_order_final=True))
    assert torch.equal(run(solver, at), run(solver, at, lower_order_final=False))
    assert not torch.equal(run(solver, 8, lower_order_final=True), run(solver, 8, lower_order_final=False))


@pytest.mark.parametrize("solver", ["ipndm", "ipndm_v"])
def test_ipndm_keeps_lower_order_final_off(solver):
    assert torch.equal(run(solver, 8), run(solver, 8, lower_order_final=False))


def test_dpmpp3m_uses_the_published_weights_below_the_threshold_and_taylor_from_it():
    assert torch.equal(run("dpmpp3m", 10), run("dpmpp3m", 10, variant="diffusers"))
    below, at = AUTO_3M_TAYLOR_FROM - 1, AUTO_3M_TAYLOR_FROM
    assert torch.equal(run("dpmpp3m", below), run("dpmpp3m", below, variant="diffusers"))
    assert torch.equal(run("dpmpp3m", at), run("dpmpp3m", at, variant="taylor"))
    assert torch.equal(run("dpm3m", 10), run("dpm3m", 10, variant="taylor"))  # the ε form keeps taylor


def test_the_declared_orders_are_the_asymptotic_ones():
    get = ds.solvers.get_solver
    assert get("dpmpp3m").order_for() == 3.0 and get("dpmpp3m").order_for(lower_order_final=True) == 2.0
    assert get("dpmpp3m").order_for(variant="diffusers") == 2.0 and get("unipc").order_for() == 3.0


# ---- the no-solver table (diffsolve.plan.DEFAULT_CONFIGS): its rule and its measurement (benchmarks/defaults.py)

def _row(problem: str, nfe: int, err: dict[str, float], median: dict[str, float], report: dict[str, float]) -> dict:
    sets = {"selection": {"err": err, "median": median}, "report": {"err": report, "median": median},
            "large": {"err": report, "median": median}}
    return {"problem": problem, "nfe": nfe, "sets": sets}


A, B, C = "ipndm:order=3 / quadratic", "ipndm:order=2 / quadratic", "dpmpp2m:lower_order_final=1 / logsnr"


def test_the_choice_is_the_smallest_geometric_mean_of_err_over_best_and_ties_go_to_the_first_listed():
    from benchmarks import defaults

    # err / best: A (1, 4) → 2; B and C (2, 1) → √2, the same outputs: C is listed first in CANDIDATES
    runs = [[_row("p", 5, {A: 1.0, B: 2.0, C: 2.0}, {A: 1.0, B: 1.0, C: 1.0}, {A: 1.0, B: 3.0, C: 3.0})],
            [_row("q", 5, {A: 8.0, B: 2.0, C: 2.0}, {A: 1.0, B: 1.0, C: 1.0}, {A: 8.0, B: 2.0, C: 2.0})]]
    scores = defaults.scores(runs, "selection", "err")[5]
    assert scores[A] == pytest.approx(2.0) and scores[B] == scores[C] == pytest.approx(2**0.5)
    assert defaults.choice(runs)[5] == (C, A)  # the runner-up: the best with another score (B ties with C)
    assert defaults.problem_ratio(runs, 5, A, C, "report") == pytest.approx((4.0 / 3.0) ** 0.5)


def test_the_median_rule_is_used_only_where_its_picks_generalise_better_on_the_report_set():
    from benchmarks import defaults

    sel, med = {A: 1.0, B: 1.1, C: 3.0}, {A: 2.0, B: 1.0, C: 3.0}  # RMSE picks A, the median B
    for report, rule, pick in (({A: 1.0, B: 1.2, C: 3.0}, "rmse", A), ({A: 1.3, B: 1.0, C: 3.0}, "median", B)):
        runs = [[_row("p", 6, sel, med, report)]]
        rule_used, gm = defaults.chosen_rule(runs)
        assert rule_used == rule and defaults.choice(runs)[6][0] == pick
        best = min(report.values())
        assert gm == pytest.approx({"rmse": report[A] / best, "median": report[B] / best})


def committed_runs() -> list:
    from benchmarks import defaults
    from benchmarks.common import RESULTS, read_json

    return [read_json(RESULTS / f"defaults-{name}.json") for name in defaults.PROBLEMS]


def test_the_table_is_the_committed_measurements_choice_at_every_measured_nfe():
    from benchmarks import defaults
    from diffsolve.plan import DEFAULT_CONFIGS, default_config

    chosen = defaults.choice(committed_runs())
    assert sorted(chosen) == defaults.NFES
    for nfe, (best, _) in chosen.items():
        assert default_config(nfe) == defaults.parsed(best), nfe
    assert DEFAULT_CONFIGS[-1][0] == float("inf")  # every budget has a configuration
    assert all(b1 < b2 for (b1, *_), (b2, *_) in zip(DEFAULT_CONFIGS, DEFAULT_CONFIGS[1:]))
    measured = [defaults.parsed(best) for best, _ in chosen.values()]
    used = [default_config(n) for n in range(1, 200)]
    assert all(u in measured for u in used) and all(m in used for m in measured)  # no unmeasured configuration


def test_issue_24s_claim_on_gmm_64_at_nfe_5_and_6_is_answered_on_the_report_set():
    """iPNDM order 3 on the default's grid beats the default on gmm-64 at NFE 5 and 6, but not across the problems:
    the default's geometric mean of err / best over the four problems is smaller on the REPORT set."""
    from benchmarks import defaults

    rows = [c for c in defaults.claim_rows(committed_runs()) if c["what"] == "new"]
    assert [c["nfe"] for c in rows] == [5, 6]
    for c in rows:
        assert c["rival"] == "ipndm:order=3 / " + c["key"].split(" / ")[1]
        assert c["err"] > c["rival_err"]  # the issue's observation holds on gmm-64 alone (1.08× and 1.17× here) …
        assert c["score"] < c["rival_score"]  # … but over the four problems the default is the better choice
