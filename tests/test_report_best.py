"""The answer first: the best-per-NFE table (its choice, its baseline ratio, its columns), its JSON rows, the Pareto
front of the overview plot and the plots' axes."""

from __future__ import annotations

import json
import math

import pytest

from diffsolve.bench import best, report
from diffsolve.bench.api import report_json, report_markdown, write_report


def rec(solver: str, nfe_target: int, rmse: float, *, grid: str = "logsnr", variable: str = "lambda",
        nfe: int | None = None, **extra) -> dict:
    """A cell record with the fields the report reads (no solve)."""
    return {"problem": "p", "schedule": "linear", "solver": solver, "options_label": "", "grid": grid,
            "variable": variable, "kind": "ode", "nfe_target": nfe_target, "nfe": nfe_target if nfe is None else nfe,
            "seed": 0, "n": 64, "status": "ok", "rmse": rmse, "ref_err": 1e-12, "tol": None, **extra}


RECORDS = [
    rec("dpmpp2m", 5, 0.10), rec("dpmpp2m", 10, 0.020), rec("dpmpp2m", 20, 2e-3),
    rec("heun", 5, 0.50, variable="sigma", nfe=4), rec("heun", 10, 0.010, variable="sigma"),
    rec("heun", 20, 1e-3, variable="sigma"),
    rec("ipndm", 5, 0.05, variable="sigma"), rec("ipndm", 10, 0.030, variable="sigma"),
    rec("ipndm", 20, 5e-12, variable="sigma"),
]


def test_best_within_each_budget_is_the_lowest_rmse_that_spent_at_most_it():
    (table,) = best.best_tables(RECORDS)
    assert table.baseline is not None and table.baseline.solver == "dpmpp2m" and table.baseline.grid == "logsnr"
    got = {row.budget: (row.best.series.solver, row.best.point["rmse"], row.ratio) for row in table.rows}
    assert got == {5: ("ipndm", 0.05, pytest.approx(0.5)), 10: ("heun", 0.010, pytest.approx(0.5)),
                   20: ("ipndm", 5e-12, pytest.approx(5e-12 / 2e-3))}
    for row in table.rows:  # against a brute-force minimum over every record within the budget
        within = [r["rmse"] for r in RECORDS if r["nfe"] <= row.budget]
        assert row.best.point["rmse"] == min(within)


def test_a_point_below_budget_counts_and_the_baseline_falls_back_to_ddim():
    records = [rec("heun", 5, 0.01, variable="sigma", nfe=4), rec("euler", 5, 0.2, variable="sigma"),
               rec("ddim", 5, 0.1), rec("ddim", 10, 0.05), rec("euler", 10, 0.09, variable="sigma")]
    (table,) = best.best_tables(records)
    assert table.baseline.solver == "ddim"  # no dpmpp2m: DDIM on logsnr, named in the text
    row5 = table.rows[0]
    assert row5.best.series.solver == "heun" and row5.best.point["nfe"] == 4 and row5.ratio == pytest.approx(0.1)
    md = best.best_markdown(records)
    assert "DDIM" in md and "is not in this run" in md and "heun / logsnr / σ̄ (4)" in md
    assert best.best_tables([rec("heun", 5, 0.01, variable="sigma")])[0].baseline is None
    assert "no classic baseline" in best.best_markdown([rec("heun", 5, 0.01, variable="sigma")])


def test_median_p90_and_flips_columns_appear_only_where_the_records_have_them():
    plain = best.best_markdown(RECORDS)
    assert "| NFE | best solver / grid / variable | RMSE | × baseline | reference error |" in plain
    tailed = [dict(r, err_median=r["rmse"] / 10, err_p90=r["rmse"] / 2, flips=3) for r in RECORDS]
    md = best.best_markdown(tailed)
    assert "| RMSE | median | p90 | flips | × baseline |" in md
    assert "| 5 | ipndm / logsnr / σ̄ | 5.00e-02 | 5.00e-03 | 2.50e-02 | 3/64 | 0.5 | 1.00e-12 |" in md
    assert "5.00e-12 †" in md  # below 10× the reference error: marked as not resolved


def test_the_report_and_the_json_start_and_end_with_the_answer():
    md = report_markdown(RECORDS)
    assert md.startswith("**Best per NFE** on `p`")
    lines = [json.loads(line) for line in report_json(RECORDS).splitlines()]
    assert [r["kind"] for r in lines] == ["ode"] * len(RECORDS) + ["best"] * 3
    rows = {r["nfe_budget"]: r for r in lines if r["kind"] == "best"}
    assert rows[10]["solver"] == "heun" and rows[10]["rmse"] == 0.010 and rows[10]["baseline_rmse"] == 0.020
    assert rows[10]["vs_baseline"] == pytest.approx(0.5) and rows[10]["baseline"] == "dpmpp2m / logsnr / λ"


def test_pareto_front_keeps_only_non_dominated_points():
    pts = [(10, 0.5), (5, 1.0), (20, 0.6), (10, 0.4), (40, 0.1), (40, 0.3), (80, 0.1)]
    assert best.pareto(pts) == [(5, 1.0), (10, 0.4), (40, 0.1)]
    front = best.pareto(pts)
    assert all(e1 > e2 and n1 < n2 for (n1, e1), (n2, e2) in zip(front, front[1:]))


def test_nfe_axis_has_integer_tick_labels_and_panels_keep_their_own_range(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.loglog([4, 6, 10], [1, 0.1, 0.01])
    report.nfe_axis(ax, [4, 6, 10])
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["4", "6", "10"]
    assert not ax.xaxis.get_minor_locator()()  # no minor ticks such as 4×10⁰
    plt.close(fig)
    wide = [rec("euler", n, 10.0 ** (4 - i), variable="sigma") for i, n in enumerate((5, 10, 20))]
    narrow = [rec("dpmpp2m", n, 0.1 - 0.01 * i) for i, n in enumerate((5, 10, 20))]
    seen = []
    real_savefig = plt.Figure.savefig

    def spy(fig, *args, **kw):
        seen.extend(ax.get_ylim() for ax in fig.axes if ax.get_visible())
        return real_savefig(fig, *args, **kw)

    plt.Figure.savefig = spy
    try:
        assert report.plot(wide + narrow, tmp_path / "p.png")
    finally:
        plt.Figure.savefig = real_savefig
    (lo1, hi1), (lo2, hi2) = seen
    assert hi1 > 1e3 and lo2 > 1e-3 and hi2 < 1  # not one shared y-axis from 1e-2 to 1e4
    assert math.log10(hi2 / lo2) < 2


def test_write_report_writes_the_overview_plot(tmp_path):
    written = write_report(RECORDS, tmp_path)
    assert tmp_path / "best_vs_nfe.png" in written
    assert (tmp_path / "best_vs_nfe.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "table.md").read_text(encoding="utf-8").startswith("**Best per NFE**")
