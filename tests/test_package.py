"""The package's lazy top level: `import diffsolve` (and the CLI module) loads no torch; every public name resolves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import diffsolve as ds

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str) -> dict:
    """Run `code` in a fresh interpreter at the repository root; it prints one JSON object."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_import_and_cli_module_load_no_torch():
    got = run_python(
        "import json, sys\n"
        "import diffsolve\n"
        "a = 'torch' in sys.modules\n"
        "import diffsolve.cli\n"
        "b = 'torch' in sys.modules\n"
        "diffsolve.VPLinear\n"
        "print(json.dumps([a, b, 'torch' in sys.modules]))\n"
    )
    assert got == [False, False, True]


def test_solve_stays_the_function_when_its_module_is_imported_first():
    got = run_python(
        "import json, types\n"
        "import diffsolve as ds\n"
        "from diffsolve.solve import Solution\n"  # binds the submodule on the package
        "import diffsolve.solve\n"
        "from diffsolve import solve\n"
        "print(json.dumps([isinstance(ds.solve, types.FunctionType), solve is ds.solve,\n"
        "                  ds.solve.__module__, Solution.__module__]))\n"
    )
    assert got == [True, True, "diffsolve.solve", "diffsolve.solve"]


def test_every_public_name_resolves_to_its_definition():
    namespace: dict = {}
    exec("from diffsolve import *", namespace)
    for name in ds.__all__:
        value = getattr(ds, name)
        assert namespace[name] is value, name
        assert name in dir(ds)
    assert ds.grids.__name__ == "diffsolve.grids" and ds.bench.__name__ == "diffsolve.bench"
    assert ds.VPSDE is ds.ForwardSDE and ds.SOLVERS is ds.solvers.SOLVERS
    assert ds.solve is ds.solve.__globals__["solve"]  # the function, not the module diffsolve.solve
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = ds.no_such_name
