"""Sweep definitions: cells (one solve each) and suites (TOML files or command-line axes).

A suite file holds defaults at the top level and one or more [[run]] tables, each a product
solvers × grids × variables × nfe × seeds on a problem; a run's keys override the defaults:

    name = "default"
    problem = "gmm-64"        # or problems = [...]; also "pkg.mod:attr", "file.py:attr", "ckpt.pt"
    schedule = "linear"       # diffsolve.schedules.SCHEDULES (default: the problem's own)
    n = 256                   # samples per cell (default: the problem's, e.g. 32 for digits-8x8)
    seeds = [0]
    nfe = [10, 20, 50]
    grids = ["logsnr"]
    variables = ["t", "sigma", "lambda"]

    [[run]]
    solvers = ["euler", "heun", { name = "unipc", options = { variant = "bh2" } }]

A solver may also be written "name:key=value:key=value" (values parsed as JSON when they can be),
a grid as a spec (diffsolve.grids: "karras:rho=5", "custom:1.0,0.5,0.1,0.001", "file:grid.json"; a
grid with its own times gets one cell per solver and variable, at the NFE those times cost; "tuned" and
"learned" tune a grid or learn a solver per cell on training draws: diffsolve.bench.specs, .tuned, .learned).
A problem given by reference that wraps a Model takes `shape = [3, 32, 32]` (else the model's) and
optionally `fingerprint = "…"`; `ref_tol` defaults to the problem's (1e-10 for the analytic ones).
Every cell carries its problem's fingerprint (diffsolve.problems.Problem.fingerprint; plus a grid
file's content hash), so changed weights make new cells instead of reusing stored ones.
Adaptive solvers (dopri5, …) ignore grids and nfe: they get one cell per entry of `tols`
(rtol = atol; default 1e-2 … 1e-6) and record the NFE they spent.
`data` (a .pt/.npy path; in Python also a tensor or array) adds, for any model, sliced W2 and MMD² between each
cell's samples and those real samples, each beside its floor; `features` ("module:attr", "file.py:attr", or a
callable in Python: batch → (B, F)) adds a Fréchet distance in that feature space (diffsolve.bench.data). The data
enter every cell's key by a hash of their content (cell field `data`), the features by their weights' hash or
`features_fingerprint` (cell field `features`), so changed data recompute.
`kind` picks how cells are run and measured (default "ode", or "sde" for stochastic solvers; see
diffsolve.bench.cells.register_kind) and `params` is a table of settings for that kind; both are
part of every cell's key.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from .. import grids as grids_mod
from .. import problems as problems_mod
from ..checks import MIN_TOL, Option, tolerance
from ..dynamics import VARIABLES
from ..errors import DiffsolveError, unknown_name
from ..problems import Problem
from ..schedules import SCHEDULES
from ..solvers import SOLVERS, get_solver
from ..solvers.learned import is_file_spec, load_spec
from . import data as data_mod
from .specs import check_specs

DTYPES = ("float64", "float32")
SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"


@dataclass(frozen=True, eq=False)
class Cell:
    """One solve of the sweep: everything that determines its result (and so its key)."""

    problem: str
    schedule: str
    solver: str
    grid: str
    variable: str
    nfe: int
    seed: int
    n: int
    options: dict[str, Any] = field(default_factory=dict)
    kind: str = "ode"
    dtype: str = "float64"
    ref_tol: float = 1e-10
    sw2_projections: int = 256
    params: dict[str, Any] = field(default_factory=dict)  # kind-specific settings (e.g. an SDE kind's)
    tol: float | None = None  # rtol = atol of an adaptive solver (its cells have grid "adaptive", nfe 0)
    repeats: int = 1  # timing: seconds is the median wall time of this many identical solves
    fingerprint: str = ""  # what fixes the numbers beyond the names: the problem's fingerprint (+ a grid file's hash)
    data: str = ""  # a hash of the user's data samples the cell is also measured against ("" without)
    features: str = ""  # the fingerprint of the feature network of the data's Fréchet distance ("" without)
    label: str = ""  # the solver as the tables show it when its name does not say it (a learned solver's file)

    @property
    def options_label(self) -> str:
        """Solver options as 'key=value,…' in sorted order ('' when none)."""
        return ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(self.options.items()))

    @property
    def solver_label(self) -> str:
        """The solver with its options, e.g. 'unipc[variant=bh2]' (a learned solver: 'learned-ipndm (l.json)')."""
        name = self.label or self.solver
        return f"{name}[{self.options_label}]" if self.options else name

    def as_dict(self) -> dict[str, Any]:
        """The cell's parameters as plain JSON types."""
        return {**asdict(self), "options": dict(sorted(self.options.items())),
                "params": dict(sorted(self.params.items())), "options_label": self.options_label}

    @cached_property
    def key(self) -> str:
        """Canonical JSON of the parameters: equal keys ⇔ the same computation.

        Fields at their default value are left out, so adding a field with a default later keeps
        every stored key valid.
        """
        p = {k: v for k, v in self.as_dict().items() if k != "options_label" and v != _DEFAULTS.get(k, _MISSING)}
        return json.dumps(p, sort_keys=True, separators=(",", ":"))


_MISSING = object()
_DEFAULTS: dict[str, Any] = {
    f.name: (f.default_factory() if f.default_factory is not MISSING else f.default) for f in fields(Cell)
    if f.default is not MISSING or f.default_factory is not MISSING
}


def parse_solver(spec: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """'name', 'name:key=value:…' or {name = …, options = {…}} → (name, options); 'file:PATH' (a learned solver's
    file) is a name without options."""
    if isinstance(spec, dict):
        unknown = set(spec) - {"name", "options"}
        if "name" not in spec or unknown:
            raise DiffsolveError(f"a solver table needs 'name' and optional 'options', got {spec!r}")
        return str(spec["name"]), dict(spec.get("options", {}))
    if str(spec).strip().startswith("file:"):
        return str(spec).strip(), {}
    name, *pairs = str(spec).strip().split(":")
    schema = {o.name: o for o in get_solver(name).schema} if name in SOLVERS else {}
    options: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise DiffsolveError(f"solver option {pair!r} in {spec!r} must read key=value, e.g. 'unipc:variant=bh2'")
        k, v = (part.strip() for part in pair.split("=", 1))
        if k in options:
            raise DiffsolveError(f"solver option {k!r} is given twice in {spec!r}; give each option once, e.g. "
                                 f"'{name}:{k}={v}'")
        options[k] = schema[k].read(v) if k in schema else Option(k, "str").read(v)  # unknown keys: refused later
    return name, options


def _check_name(kind: str, name: str, valid: Any) -> None:
    if name not in valid:
        raise DiffsolveError(unknown_name(kind, name, list(valid)))


def _list(value: Any, what: str) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise DiffsolveError(f"the {what} list is empty; give at least one value")
    return items


def _int(value: Any, what: str, minimum: int) -> int:
    return Option(what, "int", low=minimum).check(value, fix=f"give an integer >= {minimum}")


# the suite's numeric settings: their kind and a sane range, checked when the suite is loaded (before any cell runs)
SUITE_OPTIONS = {o.name: o for o in (
    Option("n", "int", None, "samples per cell", low=2, high=10**7),
    Option("sw2_projections", "int", 256, "random directions of the sliced W2 metric", low=1, high=10_000),
    Option("repeats", "int", 1, "identical timed solves per cell; seconds is their median", low=1, high=1000),
    Option("fit_last", "int", 3, "the order fit uses the last N budgets; 0 for all", low=0, high=10_000),
    Option("fit_min_nfe", "float", None, "the order fit uses budgets of at least this NFE", low=1, high=10**9),
)}
NULLABLE = {"fit_last", "fit_min_nfe"}  # None (from Python; TOML has no null) is their "no limit"
FLAGS = {"n": "--n", "repeats": "--repeats"}


def setting(data: dict[str, Any], name: str, default: Any = None, source: str = "") -> Any:
    """The suite's setting `name` (or `default`, else its Option's), checked by its Option in SUITE_OPTIONS."""
    o = SUITE_OPTIONS[name]
    value = data.get(name, o.default if default is None else default)
    if value is None and name in NULLABLE:
        return None
    fix = f"set {name} to such a value" + (f" with {FLAGS[name]} or" if name in FLAGS else "") + " in the suite file"
    return o.check(value, owner=f"suite {source!r}" if source else "", fix=fix)


RUN_KEYS = {"problem", "problems", "schedule", "n", "seeds", "nfe", "solver", "solvers", "grids", "grid",
            "variables", "variable", "dtype", "ref_tol", "sw2_projections", "kind", "params", "tols", "repeats",
            "shape", "fingerprint", "data", "features", "features_fingerprint"}
MODEL_SCHEDULE = "model"  # a cell's schedule name when it is the problem's own, not a registered default
DEFAULT_TOLS = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
ADAPTIVE_GRID = "adaptive"
LEARNED_GRID = "learned"  # the grid of a learned solver's cells: the one its file brings
SUITE_KEYS = RUN_KEYS | {"name", "description", "run", "fit_last", "fit_min_nfe"}


def _check_keys(data: dict[str, Any], valid: set[str]) -> None:
    unknown = set(data) - valid
    if unknown:
        raise DiffsolveError(
            f"unknown suite key(s) {', '.join(sorted(unknown))}; valid keys are {', '.join(sorted(valid))}"
        )


PLURAL = {"problem": "problems", "solver": "solvers", "grid": "grids", "variable": "variables"}


def _plural(data: dict[str, Any]) -> dict[str, Any]:
    """The same table with singular axis keys renamed to their plural (both at once is an error)."""
    out = dict(data)
    for one, many in PLURAL.items():
        if one in out:
            if many in out:
                raise DiffsolveError(f"give '{one}' or '{many}' in one table, not both")
            out[many] = out.pop(one)
    return out


def _get(run: dict[str, Any], name: str) -> Any:
    if name not in run:
        raise DiffsolveError(f"a suite run needs '{name}' (in the run or at the top level)")
    return run[name]


def schedule_name(problem: Problem) -> str:
    """The registered name of a problem's own schedule when it is a default one (e.g. 'linear'), else 'model'."""
    own = problem.default_schedule()
    return next((k for k, make in SCHEDULES.items() if _default_equal(make, own)), MODEL_SCHEDULE)


def _default_equal(make: Any, schedule: Any) -> bool:
    try:
        return make() == schedule
    except Exception:  # noqa: BLE001 — a schedule class without defaults matches nothing
        return False


def _problems(run: dict[str, Any]) -> list[tuple[str, Problem]]:
    """(label, problem) for each entry: a spec string (its own label) or a Problem / Model object."""
    shape = run.get("shape")
    if shape is not None and (not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape)):
        raise DiffsolveError(f"shape must be a list of positive integers such as [3, 32, 32], got {shape!r}")
    fp = run.get("fingerprint")
    if fp is not None:
        fp = Option("fingerprint", "str", doc="a string naming a Model whose weights cannot be hashed").check(
            fp, fix="give a string that changes whenever the network's numbers do, e.g. fingerprint='my-net-v2'")
    out = []
    for p in _list(_get(run, "problems"), "problem"):
        prob = problems_mod.resolve(p, shape=shape, fingerprint=fp)
        out.append((p if isinstance(p, str) else prob.name or "model", prob))
    if fp is not None and not any(isinstance(prob, problems_mod.UserProblem) for _, prob in out):
        raise DiffsolveError(f"fingerprint {fp!r} is for a problem given as a bare Model, and no problem of this run "
                             f"is one ({', '.join(label for label, _ in out)}: fingerprinted by diffsolve); leave "
                             f"fingerprint (--fingerprint) out")
    return out


def _cell_fingerprint(problem_fp: str, grid: grids_mod.GridSpec) -> str:
    extra = grid.fingerprint()
    return problem_fp if not extra else hashlib.sha256(f"{problem_fp}|{extra}".encode()).hexdigest()[:32]


def _data_keys(run: dict[str, Any], probs: list[tuple[str, Problem]]) -> dict[str, str]:
    """The cell fields `data` (a hash of the run's data) and `features` (its feature network's fingerprint), the
    data checked against every problem's sample shape and the features run on two of its samples."""
    given, feats = run.get("data"), run.get("features")
    if given is None:
        if feats is not None or run.get("features_fingerprint") is not None:
            raise DiffsolveError("features compare samples with data: give data = 'samples.pt' (--data FILE, "
                                 "data=… in Python) beside features")
        return {}
    key = data_mod.adopt_data(given)
    data = data_mod.lookup(key)
    for label, prob in probs:
        data_mod.check_shape(data, prob.sample_shape, label)
    if feats is None:
        if run.get("features_fingerprint") is not None:
            raise DiffsolveError("features_fingerprint names a feature network: give features = 'module:attr' too")
        return {"data": key}
    fp = data_mod.adopt_features(feats, run.get("features_fingerprint"))
    data_mod.features_of(data_mod.lookup(fp), data[:2], probs[0][1].sample_shape)  # fails here, not later
    return {"data": key, "features": fp}


def expand_run(run: dict[str, Any], source: str = "", *, nfe_given: bool = True) -> list[Cell]:
    """All cells of one run (defaults already merged in), every name checked against its registry; `source` (the
    suite file) is named by the errors of its settings. A cell at its own cost (a grid with its own times, a learned
    solver's file) must cost an NFE of the run's list, as ds.sample refuses nfe= it does not cost — unless the list
    is the command line's default (`nfe_given=False`: no --nfe), which the other grids use."""
    _check_keys(run, RUN_KEYS)
    run = _plural(run)
    probs = _problems(run)
    schedule_given = run.get("schedule")
    if schedule_given is not None:
        _check_name("schedule", str(schedule_given), SCHEDULES)
    solvers = [parse_solver(s) for s in _list(_get(run, "solvers"), "solver")]
    learned = [(name, options) for name, options in solvers if is_file_spec(name)]  # learned solvers' files
    solvers = [(name, options) for name, options in solvers if not is_file_spec(name)]
    for name, options in solvers:
        get_solver(name).check_options(options)  # unknown names and invalid values fail here, before any cell
    grids = [grids_mod.parse(str(g)) for g in _list(_get(run, "grids"), "grid")]
    check_specs(grids, solvers)  # per-cell tuned / learned specs: their parameters; learned: solvers learnable
    variables = [str(v) for v in _list(_get(run, "variables"), "variable")]
    for v in variables:
        _check_name("integration variable", v, VARIABLES)
    dtype = str(run.get("dtype", "float64"))
    _check_name("dtype", dtype, DTYPES)
    all_fixed = all(g.fixed for g in grids)
    nfes = [_int(x, "every nfe", 1) for x in _list(_get(run, "nfe"), "nfe")] if "nfe" in run or not all_fixed else []
    seeds = [_int(x, "every seed", 0) for x in _list(run.get("seeds", [0]), "seeds")]
    params = run.get("params", {})
    if not isinstance(params, dict):
        raise DiffsolveError(f"a run's 'params' must be a table of kind-specific settings, got {params!r}")
    tol_fix = f"tolerances are finite numbers in [{MIN_TOL:g}, 1), e.g. 1e-6"
    tols = [tolerance("every tol in 'tols'", None, "rtol = atol of an adaptive cell", below=1).check(x, fix=tol_fix)
            for x in _list(run.get("tols", DEFAULT_TOLS), "tols")]
    measured_on = _data_keys(run, probs)
    cells = []
    for p, prob in probs:
        fp = problems_mod.adopt(prob, p)
        schedule = str(schedule_given) if schedule_given is not None else schedule_name(prob)
        n = setting(run, "n", prob.default_n, source)
        ref_tol = tolerance("ref_tol", None, "rtol = atol of the reference solve", below=1).check(
            run.get("ref_tol", prob.default_ref_tol), fix=tol_fix)
        extra = {"dtype": dtype, "ref_tol": ref_tol, "sw2_projections": setting(run, "sw2_projections", None, source),
                 "params": params, "repeats": setting(run, "repeats", None, source), **measured_on}
        own = _learned_cells(p, prob, schedule, learned, seeds, n, str(run.get("kind") or "ode"), extra)
        for c in own:
            _own_cost(f"{c.solver!r} was learned for nfe={c.nfe}", c.nfe, nfes if nfe_given else [])
        cells += own
        for seed in seeds:
            for name, options in solvers:
                solver = get_solver(name)
                kind = str(run.get("kind") or ("sde" if solver.stochastic_for(**options) else "ode"))
                own = solver.integrates_for(**options).variables  # e.g. exponential integrators: λ only
                vs = variables if own is None else [v for v in variables if v in own] or [own[0]]
                if solver.adaptive:  # it picks its own steps: one cell per tolerance, no grid, no budget
                    if {"rtol", "atol"} & set(options):
                        raise DiffsolveError(
                            f"adaptive solver {name!r} takes its tolerances from the 'tols' list "
                            f"(rtol = atol = tol), not from its options {options!r}"
                        )
                    cells += [Cell(p, schedule, name, ADAPTIVE_GRID, v, 0, seed, n, options, kind, **extra, tol=tol,
                                   fingerprint=fp) for v in vs for tol in tols]
                    continue
                for g in grids:
                    cfp = _cell_fingerprint(fp, g)
                    if cfp != fp:  # a grid file's cells: their problem is found under the combined fingerprint
                        problems_mod.adopt(prob, p, cfp)
                    budgets = _budgets(g, name, solver, nfes, nfe_given, all_fixed, warn=seed == seeds[0])
                    for v in vs:
                        for nfe in budgets:
                            cells.append(Cell(p, schedule, name, g.text, v, nfe, seed, n, options, kind, **extra,
                                              fingerprint=cfp))
    check_plans(cells, dict(probs))
    return cells


def _budgets(g: Any, name: str, solver: Any, nfes: list[int], nfe_given: bool, all_fixed: bool, *,
             warn: bool) -> list[int]:
    """The NFEs a grid's cells run at: the run's list, or — a grid with its own times — the one NFE its steps cost
    (when every grid of the run has its own times the NFE list is theirs, and a budget they do not cost is refused:
    plan's rule). Such a grid outside the list is refused; beside the list's other NFEs it is said (`warn`)."""
    steps = g.steps
    if steps is not None and steps < 1:  # one time: no step (said so, not as the NFE 0 it would cost)
        raise DiffsolveError(f"grid {g.text!r} has {steps + 1} time(s); a grid needs at least two, from noisy to "
                             f"clean, e.g. [1.0, 0.5, 0.001] (checked before any cell runs)")
    budgets = nfes if steps is None or (all_fixed and nfes) else [solver.nfe_for(steps) or steps]
    if steps is not None and not all_fixed:
        what = f"grid {g.text!r} has its own times: solver {name!r} runs its {steps} steps at nfe={budgets[0]}"
        _own_cost(what, budgets[0], nfes if nfe_given else [])
        if warn and set(nfes) - set(budgets):
            warnings.warn(f"{what} only, not at the run's other NFEs "
                          f"({', '.join(str(k) for k in nfes if k not in budgets)})", stacklevel=3)
    return budgets


def _own_cost(what: str, cost: int, nfes: list[int]) -> None:
    """Refuse a cell at its own cost outside the run's NFE list (empty: no list to keep to)."""
    if nfes and cost not in nfes:
        raise DiffsolveError(f"{what}, which is not in the NFE list [{', '.join(map(str, nfes))}]; add {cost} to "
                             f"the list (--nfe, or nfe in the suite), or run it in a sweep of its own without --nfe "
                             f"(checked before any cell runs)")


def check_plans(cells: list[Cell], probs: dict[str, Problem]) -> None:
    """Each cell's plan (diffsolve.plan, as the cell will make it), checked before any cell runs where that is cheap:
    the solver's budget, the step count, the grid's parameters and times, a grid file's schedule and problem — no
    network call (plan(probe=True)). Adaptive solvers, learned solvers' files and per-cell tuned or learned grids are
    left out (checked by their own up-front checks, or only by their run)."""
    from ..plan import plan
    from ..solve import check_direction

    models: dict[tuple[str, str], Any] = {}
    seen: set[tuple[Any, ...]] = set()
    for c in cells:
        key = (c.problem, c.schedule, c.solver, c.options_label, c.grid, c.variable, c.nfe, c.fingerprint)
        if key in seen or c.tol is not None or is_file_spec(c.solver) or grids_mod.parse(c.grid).name in \
                grids_mod.DEFERRED:
            continue
        seen.add(key)
        prob = probs[c.problem]
        if (c.problem, c.schedule) not in models:
            sched = prob.default_schedule() if c.schedule == MODEL_SCHEDULE else SCHEDULES[c.schedule]()
            models[c.problem, c.schedule] = prob.model(sched)
        try:
            p = plan(models[c.problem, c.schedule], c.solver, nfe=c.nfe, grid=c.grid, variable=c.variable,
                     options=dict(c.options), fingerprint=prob.fingerprint(), probe=True)
            check_direction(p.dynamics, p.grid)  # a grid with its own times (custom:, file:) may run backwards
            if _coefficients_refused(p):  # on a probe grid coarser than the cell's: confirm on the cell's own
                _coefficients_refused(plan(models[c.problem, c.schedule], c.solver, nfe=c.nfe, grid=c.grid,
                                           variable=c.variable, options=dict(c.options),
                                           fingerprint=prob.fingerprint()), strict=True)
        except DiffsolveError as e:
            raise type(e)(f"problem {c.problem!r}, solver {c.label or c.solver!r}, grid {c.grid!r}, nfe {c.nfe}: {e} "
                          f"(checked before any cell runs)") from None


def _coefficients_refused(p: Any, *, strict: bool = False) -> bool:
    """Compile an exponential integrator's step plan on the plan's grid, where per-step bounds of its options live
    (ddim's eta: η²(1 − e^(−2h)) ≤ 1 on every step h); plan(probe=True) checks options and grid only. On the cell's
    own grid (`strict`, or a probe grid no coarser than it) a refusal is raised; on a coarser probe grid it is
    returned (True) for the caller to confirm on the cell's grid."""
    from ..plan import PROBE_STEPS
    from ..solvers.exp.base import ExpSolver

    if not isinstance(p.solver, ExpSolver) or p.solver.adaptive:
        return False
    try:
        p.solver.plan_for(p.dynamics, p.grid, dict(p.options))
    except DiffsolveError:
        if strict or p.grid.steps < PROBE_STEPS:
            raise
        return True
    return False


def _learned_cells(label: str, prob: Problem, schedule: str, learned: list[tuple[str, dict[str, Any]]],
                   seeds: list[int], n: int, kind: str, extra: dict[str, Any]) -> list[Cell]:
    """One cell per learned solver's file and seed, at its own NFE, grid and variable; each file read and refused
    here, before any cell runs, for another schedule or problem (diffsolve.solvers.learned)."""
    cells = []
    sched = prob.default_schedule() if schedule == MODEL_SCHEDULE else SCHEDULES[schedule]()
    for spec, options in learned:
        try:
            solver = load_spec(spec, sched, prob.fingerprint())
            solver.solver.check_options(options)
        except DiffsolveError as e:
            raise type(e)(f"problem {label!r}: {e}") from None
        fp = _cell_fingerprint(problems_mod.adopt(prob, label), grids_mod.parse(spec))  # the file's hash too
        problems_mod.adopt(prob, label, fp)
        shown = f"{solver.solver.name} ({Path(spec[len('file:'):]).name})"
        cells += [Cell(label, schedule, spec, LEARNED_GRID, solver.variable, solver.nfe, seed, n, options, kind,
                       **extra, fingerprint=fp, label=shown) for seed in seeds]
    return cells


SUITE_NAME = re.compile(r"\w[\w .+-]*")  # a plain word: it names the results folder bench-results/NAME


def suite_name(name: Any, source: str = "") -> str:
    """A suite's name, checked to be a plain file-name-safe word (letters, digits, space, '.', '+', '-', '_'; no
    '..'), since it names the results folder bench-results/NAME."""
    if not isinstance(name, str) or not SUITE_NAME.fullmatch(name) or ".." in name or len(name) > 100:
        where = f" in {source!r}" if source else ""
        raise DiffsolveError(f"suite name {name!r}{where} must be a plain word of letters, digits, spaces, '.', '+', "
                             f"'-' and '_' (no '/' or '..'; at most 100 characters): it names the results folder "
                             f"bench-results/NAME; rename it, e.g. name = \"my-suite\"")
    return name


@dataclass
class Suite:
    """A named list of cells plus report settings (order fit range)."""

    name: str
    cells: list[Cell]
    description: str = ""
    fit_last: int | None = 3
    fit_min_nfe: float | None = None
    source: str = ""

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], name: str = "suite", source: str = "", overrides: dict[str, Any] | None = None,
        *, nfe_given: bool = True,
    ) -> Suite:
        """Build from parsed TOML: top-level defaults merged into each [[run]] (or one implicit run).

        `overrides` (e.g. {"n": 64} from the command line) win over both the defaults and the runs; `nfe_given=False`
        when the NFE list is the command line's default (see expand_run).
        """
        _check_keys(data, SUITE_KEYS)
        fit_last, fit_min_nfe = setting(data, "fit_last", source=source), setting(data, "fit_min_nfe", source=source)
        if fit_last == 1:
            raise DiffsolveError(f"suite{f' {source!r}' if source else ''}: fit_last = 1 leaves one budget, which "
                                 f"fits no order; give 2 or more (the default is 3), or 0 for all budgets")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise DiffsolveError(f"suite{f' {source!r}' if source else ''}: description must be a string, got "
                                 f"{description!r}; quote it, e.g. description = \"what this suite measures\"")
        defaults = _plural({k: v for k, v in data.items() if k in RUN_KEYS})
        runs = data.get("run", [{}])
        if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            raise DiffsolveError(
                f"'run' must be an array of tables, got a {type(runs).__name__} ({str(runs)[:60]}); "
                f"write each run as [[run]] (two brackets), not [run]"
            )
        cells: list[Cell] = []
        seen: set[str] = set()
        for run in runs:
            _check_keys(run, RUN_KEYS)
            for cell in expand_run({**defaults, **_plural(run), **_plural(overrides or {})}, source,
                                   nfe_given=nfe_given):
                if cell.key not in seen:
                    seen.add(cell.key)
                    cells.append(cell)
        if any("tols" in table for table in (data, *runs, overrides or {})) and all(c.tol is None for c in cells):
            warnings.warn("tols (--tols) are the tolerances of adaptive solvers (dopri5, …), and no solver of this "
                          "suite is adaptive, so they are not used; add one (e.g. --solver euler,dopri5) or leave "
                          "tols out", stacklevel=2)
        return cls(suite_name(data.get("name", name), source), cells, description, fit_last or None, fit_min_nfe,
                   source)

    @classmethod
    def load(cls, path_or_name: str | Path, overrides: dict[str, Any] | None = None) -> Suite:
        """A suite from a TOML path, or by name from diffsolve/suites/ (e.g. 'default')."""
        path = Path(path_or_name)
        if not path.exists():
            packaged = SUITES_DIR / f"{path_or_name}.toml"
            if not packaged.exists():
                names = sorted(p.stem for p in SUITES_DIR.glob("*.toml"))
                raise DiffsolveError(
                    f"no suite file {str(path_or_name)!r}; give a path to a TOML file or a packaged suite name: "
                    f"{', '.join(names)}"
                )
            path = packaged
        with open(path, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise DiffsolveError(f"suite file {str(path)!r} is not valid TOML: {e}") from e
            except UnicodeDecodeError as e:
                raise DiffsolveError(f"suite file {str(path)!r} is not UTF-8 text ({e}); TOML files are UTF-8: save it "
                                     f"again as UTF-8") from None
        return cls.from_dict(data, name=path.stem, source=str(path), overrides=overrides)
