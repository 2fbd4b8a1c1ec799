"""The no-solver default of ds.sample, measured: every standard configuration on every standard grid, chosen on one
draw set and reported on others (benchmarks/RESULTS.md, "The default of sample()").

Per problem and NFE, every configuration in --candidates that spends exactly the budget (heun only at even NFE, …) on
every standard grid (diffsolve.tuning.STANDARD_GRIDS) is solved from three disjoint sets of x_T draws — SELECTION (seed
--seed), REPORT (seed + 1) and LARGE (seed + 2) — against the float64 reference; per set and configuration: the
relative error ‖x − ref‖/‖ref‖, the median and 90th percentile of the per-sample error, and, for problems that know
their modes (Problem.component_of), the number of samples that end in another mode than the reference.

The choice (`--choose` over the problems' files): per NFE, the configuration with the smallest geometric mean over
problems of err / best err on the SELECTION set (benchmarks.tuned_grids.default_choices), by the relative error
(the RMSE rule) or by the median per-sample error (the median rule). Where the rules pick differently, the rule
whose picks have the smaller REPORT-set relative error (geometric mean over those NFEs and problems) is used for
every NFE; the REPORT set decides nothing else, and the LARGE set only fills the tables (flips, medians).

Checked with --choose (exit 1 when one fails): diffsolve.plan.default_config at each measured NFE is the choice; at
every measured NFE the new default is no worse on the REPORT set than the previous table (PREVIOUS; geometric mean
over problems); on gmm-64 at NFE 5 and 6, where issue 24 found the default 1.3× and 1.36× iPNDM order 3's error on the
same grid, the default's geometric mean over problems of err / best on the REPORT set is no larger than iPNDM order
3's (its ratio on gmm-64 is printed and tabled). Each problem's run checks that every cell was measured on the three
sets and every value is finite.

    OMP_NUM_THREADS=1 python -m benchmarks.defaults --problem gmm-64 --out benchmarks/results/defaults-gmm-64
    python -m benchmarks.defaults --choose benchmarks/results/defaults-gmm-64.json,…   (the tables and the checks)
    python -m benchmarks.defaults --smoke          (tiny sizes into a temporary folder)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

import torch

import diffsolve as ds
from diffsolve.bench.metrics import flips, per_sample_err, quantiles, rel_err
from diffsolve.plan import default_config, plan
from diffsolve.problems import resolve
from diffsolve.schedules import F64
from diffsolve.tuning import STANDARD_GRIDS

from .common import Claims, output_arguments, read_json, report, smoke_argument, smoke_sizes, write
from .heldout import config, nfe_list, solve_heldout
from .tuned_grids import default_choices

# the configurations a user gets without tuning; every automatic choice is pinned (lower_order_final, variant)
CANDIDATES = (
    "dpmpp2m:lower_order_final=1", "dpmpp2m:lower_order_final=0",
    "dpmpp3m:lower_order_final=1:variant=taylor", "dpmpp3m:lower_order_final=0:variant=taylor",
    "dpmpp3m:lower_order_final=1:variant=diffusers", "dpmpp3m:lower_order_final=0:variant=diffusers",
    "unipc:lower_order_final=1:variant=bh1", "unipc:lower_order_final=0:variant=bh1",
    "unipc:lower_order_final=1:variant=bh2", "unipc:lower_order_final=0:variant=bh2",
    "deis:lower_order_final=1", "deis:lower_order_final=0",
    "ipndm:order=2", "ipndm:order=3", "ipndm:order=4", "ipndm_v:order=3", "ipndm_v:order=4",
    "dpmpp2s", "dpm3", "heun", "rk3", "rk4",
)
SETS = ("selection", "report", "large")
NFES = [4, 5, 6, 7, 8, 10, 12, 15, 20]
PROBLEMS = ("gmm-64", "gmm-2d", "toy-2d", "digits-8x8")  # the order of the tables
# diffsolve.plan.DEFAULT_CONFIGS before this measurement (benchmarks/tuned_grids.py, 256 held-out draws): max NFE → key
PREVIOUS = ((4, "dpmpp2m:lower_order_final=1 / quadratic"),
            (5, "dpmpp3m:lower_order_final=1:variant=taylor / quadratic"),
            (6, "ipndm:order=2 / quadratic"), (math.inf, "ipndm:order=3 / quadratic"))
CLAIM = ("gmm-64", (5, 6), "ipndm:order=3")  # issue 24: the default was 1.3× and 1.36× iPNDM order 3's error
SLACK = 1e-9


def spends_exactly(model: Any, x: torch.Tensor, solver: str, opts: dict[str, Any], nfe: int) -> bool:
    """Whether `solver` with `opts` spends exactly `nfe` evaluations (heun at nfe=5 spends 4: left out)."""
    cell = plan(model, solver, nfe=nfe, options=opts)
    return ds.solve(cell.dynamics, x[:1], cell.grid, cell.solver, **cell.options).nfe == nfe


def metrics(prob: Any, sched: Any, out: torch.Tensor, ref: torch.Tensor, ref_modes: Any) -> dict[str, float]:
    """Relative error, median and 90th percentile of the per-sample error, and mode flips (problems with modes)."""
    median, p90 = quantiles(per_sample_err(out, ref), (0.5, 0.9))
    got = {"err": rel_err(out, ref), "median": median, "p90": p90}
    if ref_modes is not None:
        got["flips"] = flips(prob.component_of(out, sched, sched.t_min), ref_modes)
    return got


def draw_sets(args: argparse.Namespace, prob: Any, sched: Any) -> dict[str, tuple[torch.Tensor, torch.Tensor, Any]]:
    """name → (x_T, reference, the reference's modes or None) for the three disjoint sets (seeds seed, +1, +2)."""
    sets = {}
    for k, name in enumerate(SETS):
        t0 = time.process_time()
        x = prob.x_T(getattr(args, f"n_{name}"), args.seed + k, sched)
        ref = prob.reference(x, sched, rtol=prob.default_ref_tol, atol=prob.default_ref_tol)
        sets[name] = (x, ref, prob.component_of(ref, sched, sched.t_min))
        print(f"{prob.name}: {name} set, {x.shape[0]} draws of seed {args.seed + k}, reference in "
              f"{time.process_time() - t0:.1f} s CPU", flush=True)
    return sets


def measure_nfe(args: argparse.Namespace, prob: Any, sched: Any, model: Any, sets: dict, nfe: int) -> dict[str, Any]:
    """One row: per set, metric → 'configuration / grid' → value, for every candidate that spends exactly `nfe`."""
    t0 = time.process_time()
    row: dict[str, Any] = {"problem": prob.name, "nfe": nfe, "seeds": {}, "sets": {}}
    x_any = sets["selection"][0]
    for k, name in enumerate(SETS):
        row["seeds"][name] = [args.seed + k, sets[name][0].shape[0]]
        row["sets"][name] = {}
    for text in args.candidates:
        solver, opts = config(text)
        if not spends_exactly(model, x_any, solver, opts, nfe):
            continue
        for grid in STANDARD_GRIDS:
            for name, (x, ref, modes) in sets.items():
                got = metrics(prob, sched, solve_heldout(model, x, solver, opts, grid, nfe), ref, modes)
                for metric, value in got.items():
                    row["sets"][name].setdefault(metric, {})[f"{text} / {grid}"] = value
    row["cpu_seconds"] = time.process_time() - t0
    return row


def run(args: argparse.Namespace, out: Any) -> list[dict[str, Any]]:
    prob = resolve(args.problem)
    sched = prob.default_schedule()
    model = prob.model(sched, dtype=F64)
    sets = draw_sets(args, prob, sched)
    rows = []
    for nfe in args.nfe:
        rows.append(measure_nfe(args, prob, sched, model, sets, nfe))
        if out:  # finished rows are kept even if a later NFE is interrupted
            write(out, rows, markdown)
        errs = rows[-1]["sets"]["selection"]["err"]
        best = min(errs, key=errs.get)
        print(f"{prob.name} NFE {nfe}: {len(errs)} cells in {rows[-1]['cpu_seconds']:.1f} s CPU; best on selection "
              f"{best} {errs[best]:.4g}", flush=True)
    return rows


def view(runs: list[list[dict[str, Any]]], name: str, metric: str) -> list[list[dict[str, Any]]]:
    """The runs as benchmarks.tuned_grids.default_choices reads them: per row, 'standard_all' = set `name`'s
    `metric` per configuration, 'standard_err' its smallest."""
    return [[{"nfe": r["nfe"], "standard_all": r["sets"][name][metric],
              "standard_err": min(r["sets"][name][metric].values())} for r in rows] for rows in runs]


def tie_order(key: str) -> tuple[int, int]:
    """Where a configuration stands in CANDIDATES and STANDARD_GRIDS: among configurations with the same score (the
    same output: dpmpp3m with lower_order_final at 4 steps is dpmpp2m) the first listed wins, whatever the order
    of the sets default_choices ranks from."""
    text, grid = key.split(" / ")
    where = list(CANDIDATES)
    return (where.index(text) if text in where else len(where), STANDARD_GRIDS.index(grid))


def ranking(runs: list[list[dict[str, Any]]], name: str, metric: str) -> dict[int, list[tuple[str, float]]]:
    """NFE → [(configuration, geometric mean over problems of its `metric` / the best's on set `name`)], best
    first (benchmarks.tuned_grids.default_choices; exact ties by `tie_order`)."""
    return {nfe: sorted(((c, gm) for c, gm, _ in ranked), key=lambda s: (s[1], tie_order(s[0])))
            for nfe, ranked in default_choices(view(runs, name, metric))}


def scores(runs: list[list[dict[str, Any]]], name: str, metric: str) -> dict[int, dict[str, float]]:
    """NFE → configuration → geometric mean over problems of (its `metric` / the best's) on set `name`."""
    return {nfe: dict(ranked) for nfe, ranked in ranking(runs, name, metric).items()}


def rule_picks(runs: list[list[dict[str, Any]]]) -> dict[str, dict[int, list[str]]]:
    """'rmse' and 'median' → NFE → configurations ranked by that rule on the SELECTION set (best first)."""
    return {rule: {nfe: [c for c, _ in ranked] for nfe, ranked in ranking(runs, "selection", metric).items()}
            for rule, metric in (("rmse", "err"), ("median", "median"))}


def chosen_rule(runs: list[list[dict[str, Any]]]) -> tuple[str, dict[str, float]]:
    """The rule used at every NFE and, per rule, the REPORT-set relative error of its picks where the rules differ
    (geometric mean over those NFEs of the geometric mean over problems of err / best); ties go to the RMSE rule."""
    picks, report_gm = rule_picks(runs), scores(runs, "report", "err")
    differ = [nfe for nfe in picks["rmse"] if picks["rmse"][nfe][0] != picks["median"][nfe][0]]
    gm = {rule: math.exp(sum(math.log(report_gm[nfe][picks[rule][nfe][0]]) for nfe in differ) / len(differ))
          if differ else 1.0 for rule in picks}
    return ("median" if gm["median"] < gm["rmse"] else "rmse"), gm


def choice(runs: list[list[dict[str, Any]]]) -> dict[int, tuple[str, str]]:
    """NFE → (the default, the runner-up) by the chosen rule on the SELECTION set; the runner-up is the best
    configuration with another score (an identical output, such as dpmpp3m's at 4 steps with lower_order_final,
    is no alternative)."""
    rule, _ = chosen_rule(runs)
    out = {}
    for nfe, ranked in ranking(runs, "selection", "err" if rule == "rmse" else "median").items():
        (best, gm), *rest = ranked
        out[nfe] = (best, next(c for c, g in rest if g != gm))
    return out


def previous(nfe: int) -> str:
    """The previous table's configuration at `nfe`."""
    return next(key for bound, key in PREVIOUS if nfe <= bound)


def parsed(key: str) -> tuple[str, str, dict[str, Any]]:
    """'solver:k=v / grid' → (solver, grid, options) as diffsolve.plan.DEFAULT_CONFIGS writes them."""
    text, grid = key.split(" / ")
    solver, opts = config(text)
    return solver, grid, opts


def by_problem(runs: list[list[dict[str, Any]]]) -> dict[str, dict[int, dict[str, Any]]]:
    """problem → NFE → row."""
    return {rows[0]["problem"]: {r["nfe"]: r for r in rows} for rows in runs if rows}


def markdown(rows: list[dict[str, Any]]) -> str:
    """One problem's file: per NFE the best configuration on each set by relative error."""
    lines = ["| NFE | cells | " + " | ".join(f"best on {s} (rel. err)" for s in SETS) + " | CPU s |",
             "|---" * (len(SETS) + 3) + "|"]
    for r in rows:
        best = [min(r["sets"][s]["err"].items(), key=lambda kv: kv[1]) for s in SETS]
        lines.append(f"| {r['nfe']} | {len(r['sets']['selection']['err'])} | "
                     + " | ".join(f"{k} ({v:.3g})" for k, v in best) + f" | {r['cpu_seconds']:.0f} |")
    return "\n".join(lines)


def markdown_choice(runs: list[list[dict[str, Any]]]) -> str:
    """Per NFE: the default and the runner-up with their scores on the SELECTION and REPORT sets, the configuration
    that the REPORT set would have chosen, the other rule's pick, and the previous table's configuration with the
    ratio new / previous on the REPORT set (geometric mean over problems)."""
    ranked, sel, rep = choice(runs), scores(runs, "selection", "err"), scores(runs, "report", "err")
    picks = rule_picks(runs)
    rule, _ = chosen_rule(runs)
    other = "median" if rule == "rmse" else "rmse"
    lines = [f"| NFE | default ({rule} rule) | selection | report | runner-up (selection, report) | best on report, "
             f"in hindsight | {other} rule's pick (report) | previous default (report) | new / previous on report |",
             "|---" * 9 + "|"]
    for nfe, (best, second) in ranked.items():
        alt, old, hindsight = picks[other][nfe][0], previous(nfe), min(rep[nfe], key=rep[nfe].get)
        alt_txt = "same" if alt == best else f"{alt} ({rep[nfe][alt]:.3f})"
        hindsight_txt = "same" if hindsight == best else f"{hindsight} ({rep[nfe][hindsight]:.3f})"
        ratio = problem_ratio(runs, nfe, best, old, "report")
        lines.append(f"| {nfe} | {best} | {sel[nfe][best]:.3f} | {rep[nfe][best]:.3f} | {second} "
                     f"({sel[nfe][second]:.3f}, {rep[nfe][second]:.3f}) | {hindsight_txt} | {alt_txt} | {old} "
                     f"({rep[nfe][old]:.3f}) | {ratio:.3f} |")
    return "\n".join(lines)


def problem_ratio(runs: list[list[dict[str, Any]]], nfe: int, a: str, b: str, name: str) -> float:
    """Geometric mean over problems of err(a) / err(b) on set `name` at `nfe`."""
    rows = [p[nfe] for p in by_problem(runs).values()]
    logs = [math.log(r["sets"][name]["err"][a] / r["sets"][name]["err"][b]) for r in rows]
    return math.exp(sum(logs) / len(logs))


def evidence_cells(r: dict[str, Any], key: str) -> str:
    """'report err | large err | large median | large flips' of one configuration in one row."""
    large = r["sets"]["large"]
    flip = large["flips"][key] if "flips" in large else "—"
    return f"{r['sets']['report']['err'][key]:.3g} | {large['err'][key]:.3g} | {large['median'][key]:.2g} | {flip}"


def markdown_evidence(runs: list[list[dict[str, Any]]]) -> str:
    """Per NFE and problem: the default and the runner-up on the REPORT set (relative error) and the LARGE set
    (relative error, median per-sample error, mode flips): whether a choice wins by the tail or the bulk."""
    ranked, rows = choice(runs), by_problem(runs)
    head = "rel. err (report) | rel. err (large) | median (large) | flips (large)"
    lines = [f"| NFE | problem | default: {head} | runner-up: {head} |", "|---" * 10 + "|"]
    for nfe, order in ranked.items():
        for problem in sorted(rows, key=PROBLEMS.index):
            r = rows[problem][nfe]
            lines.append(f"| {nfe} | {problem} | {evidence_cells(r, order[0])} | {evidence_cells(r, order[1])} |")
    return "\n".join(lines)


def claim_rows(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Issue 24's claim, on the REPORT set: on gmm-64 at NFE 5 and 6, the previous and the new default (`key`) vs
    iPNDM order 3 on the same grid (`rival`): their relative errors there and their geometric means over problems of
    err / best (`score`, `rival_score`)."""
    problem, nfes, rival = CLAIM
    rows, ranked, rep = by_problem(runs).get(problem, {}), choice(runs), scores(runs, "report", "err")
    out = []
    for nfe in (n for n in nfes if n in rows):
        errs = rows[nfe]["sets"]["report"]["err"]
        for what, key in (("previous", previous(nfe)), ("new", ranked[nfe][0])):
            other = f"{rival} / {key.split(' / ')[1]}"
            out.append({"nfe": nfe, "what": what, "key": key, "rival": other, "err": errs[key],
                        "rival_err": errs[other], "score": rep[nfe][key], "rival_score": rep[nfe][other]})
    return out


def markdown_claim(runs: list[list[dict[str, Any]]]) -> str:
    """The claim_rows as a table."""
    lines = [f"| NFE | configuration | {CLAIM[0]}: rel. err (report) | {CLAIM[2]}, same grid | ratio | all problems: "
             f"geometric mean of err / best (report) | {CLAIM[2]}'s |", "|---" * 7 + "|"]
    for c in claim_rows(runs):
        lines.append(f"| {c['nfe']} | {c['what']}: {c['key']} | {c['err']:.4g} | {c['rival_err']:.4g} | "
                     f"{c['err'] / c['rival_err']:.2f}× | {c['score']:.3f} | {c['rival_score']:.3f} |")
    return "\n".join(lines)


def markdown_all(runs: list[list[dict[str, Any]]]) -> str:
    """The three tables of RESULTS.md's section."""
    return "\n\n".join([markdown_choice(runs), markdown_evidence(runs), markdown_claim(runs)])


def check(runs: list[list[dict[str, Any]]], claims: Claims) -> None:
    """The table is the measured choice; on the REPORT set, the new default is no worse than the previous, and on
    gmm-64 at NFE 5 and 6 no worse over all problems than iPNDM order 3 on its grid (see the module's docstring)."""
    for nfe, order in choice(runs).items():
        claims.check(default_config(nfe) == parsed(order[0]),
                     f"NFE {nfe}: the measured choice {order[0]} is sample()'s default {default_config(nfe)}",
                     full_size_only=True)
        ratio = problem_ratio(runs, nfe, order[0], previous(nfe), "report")
        claims.check(ratio <= 1 + SLACK, f"NFE {nfe}: new default / previous on the REPORT set {ratio:.3f} ≤ 1 "
                     f"(geometric mean over {len(runs)} problems)", full_size_only=True)
    for c in (c for c in claim_rows(runs) if c["what"] == "new"):
        claims.check(c["score"] <= c["rival_score"] * (1 + SLACK),
                     f"{CLAIM[0]} NFE {c['nfe']}: the default {c['key']} is {c['err'] / c['rival_err']:.3f}× "
                     f"{c['rival']}'s error there, and over all problems {c['score']:.3f} ≤ {c['rival_score']:.3f} "
                     f"(geometric mean of err / best on the REPORT set)", full_size_only=True)


def check_run(rows: list[dict[str, Any]], claims: Claims, choose: bool = False) -> None:
    """One problem's file: every cell measured on the three sets, every value finite; with `choose` (smoke mode) the
    choice's checks on this one file too."""
    for r in rows:
        cells = [set(r["sets"][name]["err"]) for name in SETS]
        values = [v for name in SETS for metric in r["sets"][name].values() for v in metric.values()]
        claims.check(all(c == cells[0] for c in cells) and all(math.isfinite(v) for v in values),
                     f"{r['problem']} NFE {r['nfe']}: {len(cells[0])} cells on the {len(SETS)} sets, "
                     f"{len(values)} values, all finite")
    if choose:
        print(markdown_all([rows]))
        check([rows], claims)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problem", default="gmm-64")
    p.add_argument("--nfe", type=nfe_list, default=NFES)
    p.add_argument("--candidates", type=lambda s: s.split(","), default=list(CANDIDATES))
    p.add_argument("--seed", type=int, default=100, help="the SELECTION set's seed (REPORT: +1, LARGE: +2)")
    p.add_argument("--n-selection", type=int, default=2048)
    p.add_argument("--n-report", type=int, default=2048)
    p.add_argument("--n-large", type=int, default=8192)
    output_arguments(p)
    p.add_argument("--choose", default=None, help="comma-separated OUT.json files: the choice, its tables and checks")
    smoke_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    claims = Claims("defaults", args.smoke)
    if args.choose:
        runs = [read_json(f) for f in args.choose.split(",")]
        print(markdown_all(runs))
        check(runs, claims)
        return claims.exit_status()
    smoke_sizes(args, problem="gmm-2d", nfe=[5, 6], n_selection=16, n_report=16, n_large=32,
                candidates=["ipndm:order=3", "ipndm:order=2", "dpmpp3m:lower_order_final=1:variant=taylor", "heun"])
    torch.set_num_threads(1)
    return report(args, claims, lambda out: run(args, out), markdown,
                  lambda rows, c: check_run(rows, c, choose=args.smoke))


if __name__ == "__main__":
    sys.exit(main())
