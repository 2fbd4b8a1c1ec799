"""The knobs of one tune() call, their defaults (shared by ds.grids.tune and `diffsolve tune`) and their checks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..checks import Option
from ..errors import DiffsolveError, unknown_name
from ..solvers import get_solver
from ..solvers.base import Solver
from ..solvers.exp.learned import LearnedMultistep
from .objective import OBJECTIVES
from .refine import OPTIMIZERS

STANDARD_GRIDS = ("logsnr", "time", "quadratic", "karras")
METHODS = ("dp+refine", "dp", "refine")
GRADIENTS = ("auto", "autograd", "fd")
VALIDATION_OFFSET = 7919
# The defaults of ds.grids.tune and `diffsolve tune` alike: held-out seed 0 with n = 256 is the bench's protocol.
DEFAULTS: dict[str, Any] = {"train_seeds": (10,), "heldout_seeds": (0,), "n": 256, "candidates": 64,
                            "batch_size": 128, "objective": "mean", "trim": 0.05}
# the objective of a learned solver's weights stage and of its choice against the tuned grid (the grid stages keep
# tune's): chosen by held-out measurement (benchmarks/RESULTS.md, "Learned solvers": mean, log, trimmed)
LEARN_OBJECTIVE = "log"
AUTOGRAD_EVALS = (10, 2)  # refinement budget per stage with exact gradients: a + b·parameters evaluations
FD_EVALS_PER_PARAMETER = 100  # with finite differences: solver runs per parameter
TEACHER_LEVELS = 4  # the teacher doubles its steps at most this many times
TEACHER_BOUND = 0.1  # the teacher's measured error must be ≤ this × the training error reached
# the teacher's level is chosen before the search for a training error this many times below the best standard grid's
# on the subset (reached: gmm-64 NFE 10 ipndm 4.7×, unipc 14× against a flip-inflated start; a random diffusers UNet at
# NFE 6 2.9×); when the error reached is smaller still, a finer teacher and a shorter second refinement follow
EXPECTED_GAIN = 5.0
SCHEME_MARGIN = 3.0  # a teacher scheme this many times less accurate than the other at a level is dropped


class TuningNotice(UserWarning):
    """Tuning changed course on its own (finite differences, a finer teacher, a stop at max_seconds): one line."""


@dataclass(frozen=True)
class Settings:
    """The knobs of one tune() call, checked."""

    solver: Solver
    method: str
    restarts: int
    eval_times: bool
    optimizer: str
    gradient: str
    objective: str
    trim: float
    max_evals: int | None
    checkpoint: bool
    teacher_nfe: int | None
    teacher_tol: float | None
    variable: str | None
    validation_seeds: list[int]
    heldout_seeds: list[int]
    options: dict[str, Any]
    learn: bool = False  # a further stage learns the solver's weights (learning.py)
    conditions: int = 1  # what each learned step keeps: 1 consistency, 2 also the base weights' first moment
    learn_objective: str = LEARN_OBJECTIVE  # the weights stage's objective, and the choice's between learned and tuned


def make_settings(solver: str, method: str, restarts: int, eval_times: bool | None, optimizer: str, gradient: str,
                  objective: str, trim: float, max_evals: int | None, checkpoint: bool, teacher_nfe: int | None,
                  teacher_tol: float | None, variable: str | None, train: list[int],
                  heldout: Sequence[int] | None, validation: Sequence[int] | None,
                  options: dict[str, Any], learn: bool = False, conditions: int = 1,
                  learn_objective: str = LEARN_OBJECTIVE) -> Settings:
    """The call's knobs, each checked (a DiffsolveError naming the value, what is expected and the fix)."""
    for label, value, valid in (("tuning method", method, METHODS), ("tuning optimizer", optimizer, OPTIMIZERS),
                                ("gradient", gradient, GRADIENTS), ("objective", objective, OBJECTIVES),
                                ("learning objective", learn_objective, OBJECTIVES)):
        if value not in valid:
            raise DiffsolveError(unknown_name(label, str(value), list(valid)))
    method_obj = get_solver(solver)
    if method_obj.adaptive or method_obj.stochastic:
        raise DiffsolveError(f"tuning needs a fixed-step deterministic solver; {solver!r} is "
                             f"{'adaptive' if method_obj.adaptive else 'stochastic'}; pick e.g. ipndm or dpmpp2m")
    for label, value in (("eval_times", eval_times), ("checkpoint", checkpoint)):
        Option(label, "bool", optional=label == "eval_times").check(value, fix=f"pass {label}=True or {label}=False")
    if eval_times is None:
        eval_times = method_obj.evaluates_at_nodes and method != "dp"
    elif eval_times and not method_obj.evaluates_at_nodes:
        raise DiffsolveError(f"eval_times=True needs a solver that calls the model once per grid node; {solver!r} "
                             f"does not (pass eval_times=False, or a multistep solver such as ipndm)")
    for label, value in (("restarts", restarts), ("max_evals", max_evals), ("teacher_nfe", teacher_nfe)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise DiffsolveError(f"{label} must be a positive integer, got {value!r}; e.g. {label}=2")
    if teacher_tol is not None and not (isinstance(teacher_tol, (int, float)) and 0 < teacher_tol < math.inf):
        raise DiffsolveError(f"teacher_tol must be a positive number (the teacher's RMSE to reach), got "
                             f"{teacher_tol!r}; e.g. teacher_tol=1e-5, or leave it out")
    if not (isinstance(trim, float) and 0.0 < trim < 0.5):
        raise DiffsolveError(f"trim must be a fraction in (0, 0.5) of the draws the trimmed objective drops, got "
                             f"{trim!r}; e.g. trim=0.05")
    if not train:
        raise DiffsolveError("train_seeds is empty; give at least one seed for the training draws of x_T")
    held = list(heldout or [])
    if set(train) & set(held):
        raise DiffsolveError(f"train_seeds {train} and heldout_seeds {held} overlap; held-out draws must not be "
                             f"used for tuning")
    val = validation_seeds(train, held, None if validation is None else list(validation))
    if method != "dp" and not method_obj.evaluates_at_nodes and gradient == "autograd":
        raise DiffsolveError(f"gradient='autograd' needs a solver that calls the model once per grid node; "
                             f"{solver!r} does not: pass gradient='fd' (or 'auto')")
    if learn:
        check_learnable(method_obj, options, method, conditions)
    return Settings(method_obj, method, restarts, bool(eval_times), optimizer, gradient, objective, trim, max_evals,
                    bool(checkpoint), teacher_nfe, teacher_tol, variable, val, held, dict(options), bool(learn),
                    conditions, learn_objective)


def check_learnable(solver: Solver, options: dict[str, Any], method: str, conditions: int) -> None:
    """Refuse what cannot be learned: a solver without multistep weights, the DP alone, a conditions value."""
    if method == "dp":
        raise DiffsolveError("learning a solver refines its weights by gradients: method='dp' (the DP grid alone) "
                             "does not refine; pass method='dp+refine' (the default) or 'refine'")
    LearnedMultistep(solver, options, None, conditions)  # a solver without learnable weights, a bad value: refused


def validation_seeds(train: list[int], heldout: list[int], given: list[int] | None) -> list[int]:
    """The validation seeds: `given` (checked disjoint from training and held-out), or each training seed
    + 7919, moved up past any training or held-out seed."""
    if given is not None:
        clash = set(given) & (set(train) | set(heldout))
        if clash:
            raise DiffsolveError(f"validation_seeds {list(given)} overlap the training or held-out seeds "
                                 f"({sorted(clash)}); pick other seeds, or [] for no validation")
        return list(given)
    taken, out = set(train) | set(heldout), []
    for seed in train:
        v = seed + VALIDATION_OFFSET
        while v in taken:
            v += 1
        taken.add(v)
        out.append(v)
    return out
