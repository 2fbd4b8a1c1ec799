"""Benchmark problems by name or by reference: `get("gmm-64")`, `resolve("pkg.mod:attr")`, `register(name, factory)`.

A problem spec is a registered name (`PROBLEMS`), `pkg.module:attr`, `path/to/file.py:attr` or the path of
a checkpoint written by `diffsolve train`. `attr` (dots allowed) is a Problem, a diffsolve Model (wrapped
in a UserProblem: x_T from the prior, reference by an adaptive float64 solve) or a zero-argument
callable returning either. Factories are called once, on first use, so registering an expensive problem
costs nothing until it is asked for.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import DiffsolveError, unknown_name
from ..models import Model
from ..valuecache import ValueCache
from .base import Problem
from .gmm import GaussianMixture

PROBLEMS: dict[str, Callable[[], Problem]] = {}
_BUILT = ValueCache(64)  # (name, factory) → the problem it built
_RESOLVED = ValueCache(64)  # (spec, shape, fingerprint, file stamp) → the problem a reference names
_LIVE = ValueCache(None)  # (label, fingerprint) → problem, for the cells of this process (never evicted)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
SPEC_HELP = ("a registered name, pkg.module:attr, path/to/file.py:attr or a checkpoint written by "
             "`diffsolve train` (attr: a Problem, a diffsolve Model, or a zero-argument function returning one)")


def register(name: str, factory: Callable[[], Problem]) -> None:
    """Add a problem factory under a unique name."""
    if name in PROBLEMS:
        raise DiffsolveError(f"a problem named {name!r} is already registered")
    PROBLEMS[name] = factory


def get(name: str | Problem) -> Problem:
    """The problem registered under `name` (built once); an unknown name lists the valid ones."""
    if isinstance(name, Problem):
        return name
    if name not in PROBLEMS:
        raise DiffsolveError(unknown_name("problem", str(name), list(PROBLEMS)))
    factory = PROBLEMS[name]
    return _BUILT.get((name, factory), factory)


def _exec_file(spec: str, target: str, what: str = "problem") -> Any:
    """The module of a user's .py file, run once per path; its folder goes on sys.path (for modules beside it)."""
    path = Path(target).resolve()
    if not path.is_file():
        raise DiffsolveError(f"{what} {spec!r}: no file {target!r}; give an existing .py file, "
                             f"e.g. ./mybench.py:{spec.rpartition(':')[2]}")
    name = "diffsolve_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    loader = importlib.util.spec_from_file_location(name, path)
    if loader is None or loader.loader is None:
        raise DiffsolveError(f"{what} {spec!r}: {target!r} cannot be loaded as a Python module; give a .py file")
    module = importlib.util.module_from_spec(loader)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # as `python file.py` does: it may import modules beside it
    sys.modules[name] = module
    try:
        loader.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # noqa: BLE001 — the user's code: any exception (sys.exit too), named
        del sys.modules[name]
        raise DiffsolveError(f"{what} {spec!r}: running {str(path)!r} raised {_described(e)}; fix the file (it "
                             f"must import without error; its folder is on the import path)") from e
    return module


def _described(e: BaseException) -> str:
    """'TypeError: message' (SyntaxError: with its line; SystemExit: the sys.exit call it is)."""
    if isinstance(e, SystemExit):
        return f"SystemExit (sys.exit({e.code!r}))"
    where = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
    return f"{type(e).__name__}{where}: {e}"


def load_attr(spec: str, what: str = "problem",
              expected: str = "a Problem, a diffsolve Model or a function returning one") -> Any:
    """The object named by 'pkg.module:attr' or 'path/to/file.py:attr' (`what` and `expected` word the errors)."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise DiffsolveError(f"{what} {spec!r} must read MODULE:ATTR or FILE.py:ATTR, e.g. 'mybench:{what}'")
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _exec_file(spec, target, what)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise DiffsolveError(f"{what} {spec!r}: cannot import module {target!r} ({e}); put it on PYTHONPATH "
                                 f"or give a file path, e.g. ./{target.replace('.', '/')}.py:{attr}") from None
        except (Exception, SystemExit) as e:  # noqa: BLE001 — the user's module raised (or exited) while importing
            raise DiffsolveError(f"{what} {spec!r}: importing module {target!r} raised {_described(e)}; fix the "
                                 f"module (it must import without error)") from e
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise DiffsolveError(f"{what} {spec!r}: {target!r} has no attribute {attr!r}; name {expected}")
        value = getattr(value, part)
    return value


def _from_reference(spec: str, shape: Sequence[int] | None, fingerprint: str | None) -> Problem:
    """The Problem of a 'module:attr' / 'file.py:attr' spec; a factory that fails is named with its exception."""
    value = load_attr(spec)
    try:
        return as_problem(value, name=spec, shape=shape, fingerprint=fingerprint)
    except DiffsolveError:
        raise
    except (Exception, SystemExit) as e:  # noqa: BLE001 — the user's factory: needs arguments, raised or exited
        raise DiffsolveError(f"problem {spec!r}: calling {spec.rpartition(':')[2]}() raised {_described(e)}; it "
                             f"must take no arguments and return a Problem or a diffsolve Model") from e


def as_problem(value: Any, *, name: str = "model", shape: Sequence[int] | None = None,
               fingerprint: str | None = None) -> Problem:
    """A Problem from a Problem, a diffsolve Model (wrapped in a UserProblem) or a zero-argument factory."""
    from .user import UserProblem

    if isinstance(value, Problem):
        return value
    if isinstance(value, Model):
        return UserProblem(value, shape=shape, name=name, fingerprint=fingerprint)
    if callable(value):
        made = value()
        if isinstance(made, (Problem, Model)):
            return as_problem(made, name=name, shape=shape, fingerprint=fingerprint)
        raise DiffsolveError(f"problem {name!r}: the factory returned a {type(made).__name__}; it must return "
                             f"a Problem or a diffsolve Model")
    shown = f"{value!r} ({type(value).__name__})" if len(repr(value)) <= 60 else f"a {type(value).__name__}"
    what = "the problem" if name == "model" else f"problem {name!r}"  # 'model': no name was given
    raise DiffsolveError(f"{what} is {shown}; a problem must be a Problem, a diffsolve Model or {SPEC_HELP}")


def resolve(spec: str | Problem | Model, *, shape: Sequence[int] | None = None,
            fingerprint: str | None = None) -> Problem:
    """The Problem a spec names (see the module doc); references are loaded once per process and file version.
    `shape` is for a bare Model: a problem with a shape of its own refuses another."""
    if not isinstance(spec, str):
        label = getattr(spec, "name", "") or "model"
        return _own_shape(as_problem(spec, name=label, shape=shape, fingerprint=fingerprint), label, shape)
    if spec in PROBLEMS:
        return _own_shape(get(spec), spec, shape)
    path = Path(spec.rpartition(":")[0] if ":" in spec and not Path(spec).is_file() else spec)
    stamp = (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None
    key = (spec, tuple(shape) if shape else None, fingerprint, stamp)
    return _own_shape(_RESOLVED.get(key, lambda: _resolve_reference(spec, path, shape, fingerprint)), spec, shape)


def _own_shape(problem: Problem, label: str, shape: Sequence[int] | None) -> Problem:
    """`problem`, unless a shape was given that is not its own (only a bare Model takes its shape from the caller)."""
    if shape is not None and tuple(shape) != problem.sample_shape:
        raise DiffsolveError(f"problem {label!r} has samples of shape {problem.sample_shape}, but shape "
                             f"{tuple(shape)} was given; shape (--shape) is for a problem given as a bare Model: "
                             f"leave it out for this problem")
    return problem


def _resolve_reference(spec: str, path: Path, shape: Sequence[int] | None, fingerprint: str | None) -> Problem:
    """The Problem of a checkpoint path or a module/file reference (loaded now)."""
    if ":" not in spec and (spec.endswith(CHECKPOINT_SUFFIXES) or path.is_file()):
        from .trained import TrainedProblem

        return TrainedProblem(spec)
    if ":" in spec:
        prob = _from_reference(spec, shape, fingerprint)
        prob.name = spec
        return prob
    raise DiffsolveError(unknown_name("problem", spec, list(PROBLEMS)) + f"; or give {SPEC_HELP}")


def adopt(problem: Problem, label: str, key: str | None = None) -> str:
    """Remember `problem` under (label, its fingerprint — or `key`, e.g. a cell's with a grid file's hash) for
    `lookup`; returns that fingerprint."""
    fp = problem.fingerprint() if key is None else key
    _LIVE.put((label, fp), problem)
    return fp


def lookup(label: str, fingerprint: str = "") -> Problem:
    """The problem of a cell: the one adopted under (label, fingerprint), else `resolve(label)`."""
    live = _LIVE.peek((label, fingerprint))
    if live is not None:
        return live
    prob = resolve(label)
    if fingerprint and prob.fingerprint() != fingerprint:
        raise DiffsolveError(f"problem {label!r} has changed since its cells were made (fingerprint "
                             f"{prob.fingerprint()} ≠ {fingerprint}); expand the suite again")
    return prob


register("gmm-2d", lambda: GaussianMixture.random(
    dim=2, components=6, seed=2, mean_scale=1.0, std_range=(0.05, 0.3), name="gmm-2d",
    description="6-component 2-d Gaussian mixture, stds 0.05-0.3 (for pictures of samples and paths)",
))
register("gmm-64", lambda: GaussianMixture.random(
    dim=64, components=6, seed=64, mean_scale=0.3, std_range=(0.05, 0.3), name="gmm-64",
    description="6-component 64-d Gaussian mixture, means N(0, 0.3²), unequal weights, "
                "per-component diagonal stds 0.05-0.3",
))

from .trained import TrainedProblem  # noqa: E402  (trained networks: loaded on first use)
from .user import UserProblem  # noqa: E402

register("toy-2d", lambda: TrainedProblem.pretrained("toy-2d"))
register("digits-8x8", lambda: TrainedProblem.pretrained("digits-8x8"))
register("toy-2d-flow", lambda: TrainedProblem.pretrained("toy-2d-flow"))

__all__ = ["PROBLEMS", "GaussianMixture", "Problem", "TrainedProblem", "UserProblem", "adopt", "as_problem",
           "get", "load_attr", "lookup", "register", "resolve"]
