"""A learned solver for one model: its weights, its grid, its model and schedule, what it reached and cost — a file.

`LearnedSolver` holds a LearnedMultistep (the base method, the options it was learned with, the learned Δ; see
diffsolve.solvers.exp.learned), the grid it was learned on (times and decoupled evaluation times), the NFE and end
point, the model's fingerprints (the problem's, and a hash of the network's weights when it has any), the training,
validation and held-out errors and the cost. `save` writes one JSON file (a grid file with kind "learned": "times",
"eval_times" and "schedule", plus "solver", "options", "weights" {"deltas", "conditions", and the resulting
"combos" for reading}, "fingerprint", "network", "errors", "cost", …); `load` reads it back bit for bit and refuses it
for another schedule or another model. `solver="file:learned.json"` (diffsolve.plan) loads it wherever a solver is
named: it brings its own grid and end, as a community name does. `diffsolve.tuning.tune(…, learn=True)` (also
`ds.solvers.learn`) makes one.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import grids as grids_mod
from ..checks import Option
from ..dynamics import VARIABLES
from ..errors import DiffsolveError, SolverError
from ..grids import Grid
from ..jsonfile import read_json
from ..schedules import Schedule, from_config
from .exp.learned import CONDITIONS, LearnedMultistep

FILE = "file:"
KIND = "learned"
VERSION = 1
F64 = torch.float64
WHAT = "learned solver file"
FIX = "write it again with ds.solvers.learn(…).save(path) (or diffsolve tune --learn)"
# the file's fields (diffsolve checks them all on load, naming the file and the field): numbers and words as Options,
# then those that hold a string, an object or a list of numbers (each may be null)
FIELDS = (Option("version", "int", VERSION, "the file format; this diffsolve reads up to its own", low=1,
                 high=VERSION),
          Option("solver", "str", doc="the base method's name"),
          Option("nfe", "int", doc="network evaluations per solve", low=1),
          Option("steps", "int", doc="the grid's steps: one fewer than its times", low=1, optional=True),
          Option("variable", "choice", doc="the variable it was learned in", choices=VARIABLES, optional=True),
          Option("end", "choice", doc="where it ends", choices=("zero", "sigma_min"), optional=True),
          Option("chosen", "str", doc="what validation chose", optional=True))
TYPED = {"fingerprint": (str, "a string"), "network": (str, "a string"), "problem": (str, "a string"),
         "options": (dict, "an object"), "errors": (dict, "an object"), "cost": (dict, "an object"),
         "learning": (dict, "an object"), "weights": (dict, "an object"), "schedule": (dict, "an object"),
         "times": (list, "a list of numbers"), "eval_times": (list, "a list of numbers"),
         "tuned_times": (list, "a list of numbers"), "tuned_eval_times": (list, "a list of numbers")}
REQUIRED = ("solver", "nfe", "weights", "schedule", "times")
FIXES = {"version": f"a newer diffsolve wrote it: upgrade diffsolve to read it, or {FIX}"}


def is_file_spec(solver: Any) -> bool:
    """Whether a solver argument names a learned solver's file ('file:PATH')."""
    return isinstance(solver, str) and solver.startswith(FILE)


def network_fingerprint(net: Any) -> str | None:
    """sha256 (32 hex digits) of a network's weights and buffers in state_dict order, floating ones as float64 (a
    float32 network and its float64 copy agree; other numbers differ); None for a network without any (a closed
    form)."""
    tensors = list(net.state_dict().values()) if isinstance(net, nn.Module) else []
    if not tensors:
        return None
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        t = t.to(F64) if t.is_floating_point() else t
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def _finite(value: Any) -> Any:
    """JSON-safe: non-finite floats as None, containers element-wise."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@dataclass
class LearnedSolver:
    """A learned multistep solver with its grid, for one model and schedule (see the module doc)."""

    solver: LearnedMultistep
    grid: Grid
    nfe: int
    variable: str
    fingerprint: str = ""  # the problem's (diffsolve.problems: Problem.fingerprint)
    network: str | None = None  # network_fingerprint of the model's network (None: no weights)
    problem: str = ""
    chosen: str = "weights"  # what validation chose: "weights", or the stage of the tuned grid it started from
    errors: dict[str, Any] = field(default_factory=dict)  # train / validation / heldout, and the tuned grid's
    cost: dict[str, Any] = field(default_factory=dict)  # sample-evaluations, seconds, by stage (teacher included)
    learning: dict[str, Any] = field(default_factory=dict)  # objective, draws, seeds, teacher, evaluations
    tuned_grid: Grid | None = None  # the tuned grid it started from (validation's choice among the grid stages)

    @property
    def schedule(self) -> Schedule:
        return self.grid.schedule

    @property
    def end(self) -> str:
        """Where it ends: "zero" (a last step to σ = 0) or "sigma_min"."""
        return "zero" if self.solver.learned_options.get("to_zero") else "sigma_min"

    def combos(self) -> list[dict[str, Any]]:
        """Every combination of its plan on its grid: {"a": a_i, "w": [w_ij …]} as floats (corrector, predictor)."""
        plan = self.solver.plan_on(self.grid)
        return [{"a": float(c.a), "w": [float(w) for w in c.w]} for c in plan.combos()]

    def to_json(self) -> dict[str, Any]:
        """The file's fields beside times, evaluation times and schedule."""
        deltas = [list(d) for d in self.solver.deltas] if self.solver.deltas is not None else None
        tuned = self.tuned_grid
        return _finite({
            "kind": KIND, "version": VERSION, "solver": self.solver.base.name, "options": self.solver.learned_options,
            "nfe": self.nfe, "steps": self.grid.steps, "variable": self.variable, "end": self.end,
            "fingerprint": self.fingerprint, "network": self.network, "problem": self.problem, "chosen": self.chosen,
            "weights": {"conditions": self.solver.conditions, "deltas": deltas, "combos": self.combos(),
                        "rule": "w = w0 + f·PΔ, f = Σ_j w0_j (first-order weight)"},
            "errors": self.errors, "cost": self.cost, "learning": self.learning,
            "tuned_times": None if tuned is None else tuned.t.tolist(),
            "tuned_eval_times": None if tuned is None or tuned.t_eval is None else tuned.t_eval.tolist()})

    def save(self, path: str | Path) -> Path:
        """Write the file; `solver="file:PATH"` then loads it wherever a solver is named."""
        return grids_mod.save(self.grid, path, **self.to_json())

    def file_data(self) -> dict[str, Any]:
        """The file's JSON object (what `save` writes; `from_data` reads it back bit for bit)."""
        return grids_mod.file_data(self.grid, **self.to_json())

    @classmethod
    def load(cls, path: str | Path, schedule: Schedule | None = None, fingerprint: str | None = None,
             net: Any = None) -> LearnedSolver:
        """Read a learned solver; refuse it for another `schedule`, problem `fingerprint` or network `net` (each
        checked when given)."""
        out = cls.from_data(read_json(path, WHAT, FIX, error=SolverError), str(path))
        out.check(str(path), schedule, fingerprint, net)
        return out

    @classmethod
    def from_data(cls, data: dict[str, Any], where: str) -> LearnedSolver:
        """The learned solver of a file's JSON object (`file_data`; `where` names it in errors), not checked."""
        if not isinstance(data, dict) or data.get("kind") != KIND:
            kind = data.get("kind") if isinstance(data, dict) else f"not a JSON object but a {type(data).__name__}"
            raise SolverError(f"{where!r} is not a learned solver's file (kind {kind!r}, expected "
                              f"{KIND!r}); a grid file goes to grid='file:{where}', a learned solver is made by "
                              f"ds.solvers.learn / diffsolve tune --learn")
        data = grids_mod.checked_data(checked_fields(data, where), where)
        try:
            sched = from_config(data["schedule"])
            weights = data["weights"]
            solver = LearnedMultistep(data["solver"], data.get("options") or {}, weights["deltas"],
                                      weights.get("conditions", 1))
            grid = Grid(sched, data["times"], "learned", grids_mod.eval_times_of(data, where))
            tuned = None if not data.get("tuned_times") else Grid(
                sched, data["tuned_times"], "tuned", None if data.get("tuned_eval_times") is None
                else torch.tensor(data["tuned_eval_times"], dtype=F64))
        except (KeyError, TypeError, ValueError) as e:
            raise SolverError(f"{WHAT} {where!r} is incomplete or damaged ({type(e).__name__}: {e}); {FIX}") from None
        made = cls(solver, grid, data["nfe"], data.get("variable") or "", data.get("fingerprint") or "",
                   data.get("network"), data.get("problem") or "", data.get("chosen") or "weights",
                   dict(data.get("errors") or {}), dict(data.get("cost") or {}), dict(data.get("learning") or {}),
                   tuned)
        for name, value, want in (("steps", data.get("steps"), grid.steps), ("end", data.get("end"), made.end)):
            if value not in (None, want):
                raise SolverError(f"{WHAT} {where!r}: {name} is {value!r}, but its times and options make {want!r}; "
                                  f"{FIX}")
        try:
            made.solver.plan_on(grid)  # its weights fit its own grid (no network call)
        except SolverError as e:
            raise SolverError(f"{WHAT} {where!r}: its weights do not fit its own grid ({e}); {FIX}") from None
        return made

    def check(self, where: str, schedule: Schedule | None = None, fingerprint: str | None = None,
              net: Any = None) -> None:
        """Refuse another schedule, another problem fingerprint (when given) or another network (when given)."""
        fix = "learn one for it (ds.solvers.learn, diffsolve tune --learn)"
        if schedule is not None and schedule.to_config() != self.schedule.to_config():
            raise SolverError(f"learned solver {where!r} was learned on schedule {self.schedule!r} but the model "
                              f"uses {schedule!r}; use the same schedule, or {fix}")
        if fingerprint and self.fingerprint and fingerprint != self.fingerprint:
            raise SolverError(f"learned solver {where!r} was learned for problem fingerprint {self.fingerprint!r}, not "
                              f"{fingerprint!r} (another model, or its weights changed); {fix}")
        if net is not None and network_fingerprint(net) != self.network:
            raise SolverError(f"learned solver {where!r} was learned for a network with weights fingerprint "
                              f"{self.network!r}, but this model's network has {network_fingerprint(net)!r} (another "
                              f"model, or its weights changed); {fix}")


MAX_DELTA = 1e3  # |Δ| at most: learned corrections are of order 0.1–1 (the base weights' own scale)


def checked_fields(data: dict[str, Any], where: str) -> dict[str, Any]:
    """A learned solver file's JSON object with every field checked (FIELDS, TYPED, the weights: Δ finite numbers,
    conditions 1 or 2); a SolverError names the file, the field, its value and the fix. Numbers come back as int or
    float."""
    owner = f"{WHAT} {where!r}"
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise SolverError(f"{owner} has no {', '.join(repr(k) for k in missing)}; {FIX}")
    out = dict(data)
    for option in FIELDS:
        out[option.name] = option.check(data.get(option.name, option.default), owner=owner,
                                        fix=FIXES.get(option.name, FIX), error=SolverError)
    for name, (kind, what) in TYPED.items():
        value = data.get(name)
        numbers = what != "a list of numbers" or all(Option(name, "float").valid(v) for v in value or [])
        if value is not None and not (isinstance(value, kind) and numbers):
            raise SolverError(f"{owner}: {name} must be {what} (finite) or null, got {_short(value)}; {FIX}")
    weights = dict(data["weights"])
    weights["conditions"] = Option("weights.conditions", "int", 1, "the conditions its steps keep", low=min(CONDITIONS),
                                   high=max(CONDITIONS)).check(weights.get("conditions", 1), owner=owner, fix=FIX,
                                                               error=SolverError)
    deltas = weights.get("deltas")
    if deltas is not None and not (isinstance(deltas, list) and all(isinstance(d, list) for d in deltas)):
        raise SolverError(f"{owner}: weights.deltas must be a list of lists of numbers (one per combination) or null, "
                          f"got {_short(deltas)}; {FIX}")
    for i, d in enumerate(deltas or []):
        for j, v in enumerate(d):
            Option(f"weights.deltas[{i}][{j}]", "float", doc="a learned weight; learning keeps them of order 1",
                   low=-MAX_DELTA, high=MAX_DELTA).check(
                v, owner=owner, fix=f"the file is damaged (or its learning diverged); {FIX}", error=SolverError)
    out["weights"] = weights
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "…"


def load_spec(spec: str | LearnedSolver, schedule: Schedule | None = None, fingerprint: str | None = None,
              net: Any = None) -> LearnedSolver:
    """The learned solver of 'file:PATH' (read, checked) or a LearnedSolver (checked); each check when its value is
    given."""
    if isinstance(spec, LearnedSolver):
        spec.check("(in memory)", schedule, fingerprint, net)
        return spec
    if not is_file_spec(spec):
        raise DiffsolveError(f"internal: {spec!r} is not a learned solver")
    path = spec[len(FILE):]
    if not path:
        raise SolverError(f"solver {spec!r} names no file; write 'file:path/to/learned.json'")
    return LearnedSolver.load(path, schedule, fingerprint, net)


def learned_of(solver: Any, schedule: Schedule | None = None, net: Any = None) -> LearnedSolver | None:
    """The learned solver a solver argument names ('file:PATH' read, or a LearnedSolver), checked against `schedule`
    and `net` when given; None for any other solver argument."""
    if isinstance(solver, LearnedSolver) or is_file_spec(solver):
        return load_spec(solver, schedule, None, net)
    return None
