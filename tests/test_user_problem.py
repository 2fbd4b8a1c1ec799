"""A user's model or problem by reference (module:attr, file.py:attr, checkpoint) in the CLI, suite TOML and
Python; results keyed by the problem's fingerprint: a weight change recomputes cells and references."""

from __future__ import annotations

import json
import math
import textwrap

import pytest
import torch

import diffsolve as ds
from diffsolve import cli, problems
from diffsolve.bench import Suite, expand_run
from diffsolve.errors import DiffsolveError
from diffsolve.problems.base import Problem

F64 = torch.float64
MODULE = textwrap.dedent('''
    import torch
    import diffsolve as ds

    BIAS = {bias}

    class Net(torch.nn.Module):
        """eps(x, t) = A x + bias, a linear network: small and deterministic."""

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            with torch.no_grad():
                self.lin.weight.copy_(torch.tensor([[0.5, 0.1], [-0.2, 0.4]]))
                self.lin.bias.fill_(BIAS)

        def forward(self, x, t):
            return self.lin(x) * (1 + 0.1 * t[:, None].to(x.dtype))

    model = ds.EpsModel(Net(), ds.VPLinear())
    model.shape = (2,)

    def make_problem():
        return ds.problems.UserProblem(ds.EpsModel(Net(), ds.VPLinear()), shape=(2,), name="mine")
''')
BENCH = ["--solver", "euler,heun", "--variable", "lambda", "--nfe", "4,8", "--n", "8", "--ref-tol", "1e-8",
         "--no-progress", "--json"]


def write_module(path, bias=0.0):
    path.write_text(MODULE.format(bias=bias))
    return path


def json_lines(capsys) -> list[dict]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return [r for r in lines if r["kind"] != "best"]  # the cells (the best-per-NFE rows follow them)


def test_module_attr_through_cli_and_toml(tmp_path, monkeypatch, capsys):
    write_module(tmp_path / "mybench_mod.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["bench", "--problem", "mybench_mod:model", *BENCH, "--out", str(tmp_path / "a")]) == 0
    rows = json_lines(capsys)
    assert len(rows) == 4 and {r["problem"] for r in rows} == {"mybench_mod:model"}
    assert all(r["status"] == "ok" and r["fingerprint"].startswith("UserProblem:") for r in rows)
    assert all(r["n"] == 8 and r["ref_err"] < 1e-7 for r in rows)
    # the factory, from a suite file; same network → same fingerprint, so a TOML run shares nothing but that
    suite = tmp_path / "s.toml"
    suite.write_text('problem = "mybench_mod:make_problem"\nsolvers = ["heun"]\ngrids = ["logsnr"]\n'
                     'variables = ["lambda"]\nnfe = [4]\nn = 8\nref_tol = 1e-8\n')
    assert cli.main(["bench", "--suite", str(suite), "--out", str(tmp_path / "b"), "--no-progress", "--json"]) == 0
    (row,) = json_lines(capsys)
    heun4 = next(r for r in rows if r["solver"] == "heun" and r["nfe"] == 4)
    assert row["fingerprint"] == heun4["fingerprint"] and row["rmse"] == pytest.approx(heun4["rmse"], rel=1e-12)


def test_file_attr_through_cli_and_toml(tmp_path, capsys):
    path = write_module(tmp_path / "net_file.py")
    assert cli.main(["bench", "--problem", f"{path}:model", *BENCH, "--out", str(tmp_path / "a")]) == 0
    assert len(json_lines(capsys)) == 4
    suite = tmp_path / "s.toml"
    suite.write_text(f'problem = "{path}:model"\nshape = [2]\nsolvers = ["euler"]\ngrids = ["logsnr"]\n'
                     f'variables = ["lambda"]\nnfe = [4]\nn = 8\n')
    cells = Suite.load(suite).cells
    assert [(c.problem, c.ref_tol, c.n, c.schedule) for c in cells] == [(f"{path}:model", 1e-6, 8, "linear")]


def test_checkpoint_path_through_cli_toml_and_likelihood(tmp_path, capsys):
    ckpt = tmp_path / "toy.pt"
    assert cli.main(["train", "toy-2d", "--steps", "3", "--batch", "8", "--out", str(ckpt)]) == 0
    assert cli.main(["bench", "--problem", str(ckpt), *BENCH, "--out", str(tmp_path / "a")]) == 0
    rows = json_lines(capsys)
    assert len(rows) == 4 and all(r["status"] == "ok" and r["sw2_floor"] > 0 for r in rows)  # toy: exact samples
    shipped = problems.get("toy-2d").fingerprint()
    assert {r["fingerprint"] for r in rows} != {shipped}  # other weights, another key
    suite = tmp_path / "s.toml"
    suite.write_text(f'problem = "{ckpt}"\nsolvers = ["euler"]\ngrids = ["logsnr"]\nvariables = ["t"]\nnfe = [4]\n')
    assert Suite.load(suite).cells[0].fingerprint == rows[0]["fingerprint"]
    assert cli.main(["likelihood", str(ckpt), "--n", "10", "--rtol", "1e-3", "--atol", "1e-3"]) == 0
    assert "nll_nats_per_dim" in capsys.readouterr().out
    # the packaged checkpoints are never overwritten
    from diffsolve import nets

    assert cli.main(["train", "toy-2d", "--steps", "1", "--out", str(nets.checkpoint_path("toy-2d"))]) == 2
    assert "never overwrites" in capsys.readouterr().err


def test_weight_change_recomputes_cells_and_cached_references(tmp_path, capsys):
    path = write_module(tmp_path / "w.py")
    out = tmp_path / "out"
    args = ["bench", "--problem", f"{path}:model", *BENCH, "--out", str(out)]
    results, cache = out / "results.jsonl", out / "cache"
    assert cli.main(args) == 0
    first = json_lines(capsys)
    assert len(results.read_text().splitlines()) == 4 and len(list(cache.glob("reference-*.pt"))) == 1
    assert cli.main(args) == 0  # same weights: every cell comes from the store, nothing appended
    assert [r["key"] for r in json_lines(capsys)] == [r["key"] for r in first]
    assert len(results.read_text().splitlines()) == 4 and len(list(cache.glob("reference-*.pt"))) == 1
    write_module(path, bias=0.25)  # one weight changes
    assert cli.main(args) == 0
    second = json_lines(capsys)
    assert len(results.read_text().splitlines()) == 8 and len(list(cache.glob("reference-*.pt"))) == 2
    assert {r["fingerprint"] for r in second}.isdisjoint({r["fingerprint"] for r in first})
    assert all(a["rmse"] != b["rmse"] for a, b in zip(first, second))


def test_weight_change_in_python_recomputes(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 2).double()

    def eps(x, t):
        return net(x)

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, t):
            return eps(x, t)

    model = ds.EpsModel(Wrapped(), ds.VPLinear())
    kw = {"shape": (2,), "solvers": ["euler"], "nfe": [4], "n": 8, "out": tmp_path, "progress": False}
    a = ds.bench.run(model, **kw)
    b = ds.bench.run(model, **kw)  # same weights: skipped, the same record
    assert a.records == b.records and len((tmp_path / "results.jsonl").read_text().splitlines()) == 1
    with torch.no_grad():
        net.weight[0, 0] += 0.5
    c = ds.bench.run(model, **kw)
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2
    assert c.records[0]["fingerprint"] != a.records[0]["fingerprint"]
    assert c.records[0]["rmse"] != a.records[0]["rmse"]


def test_unhashable_model_warns_and_an_explicit_fingerprint_is_used():
    model = ds.EpsModel(lambda x, t: 0.1 * x, ds.VPLinear())
    with pytest.warns(UserWarning, match="fingerprint="):
        fp = problems.UserProblem(model, shape=(3,)).fingerprint()
    assert "unhashable" in fp
    p = problems.UserProblem(model, shape=(3,), fingerprint="v1")
    assert p.fingerprint() == "UserProblem:v1"
    cells = expand_run({"problem": model, "shape": [3], "fingerprint": "v1", "solvers": ["euler"], "grids": ["logsnr"],
                        "variables": ["t"], "nfe": [2]})
    assert cells[0].fingerprint == "UserProblem:v1"
    with pytest.raises(DiffsolveError, match="shape=\\(3, 32, 32\\)"):
        problems.UserProblem(model)


def test_user_problem_reference_and_schedules():
    """The UserProblem's reference solves the model's own ODE: for ε = c·x (a Gaussian data law) the DDIM ODE
    in σ̄ is linear, x̄' = c x̄/√(σ̄²+1), with the closed form x̄(σ̄₁) = x̄(σ̄₀)·exp(c (asinh σ̄₁ − asinh σ̄₀))."""
    c = 0.7
    model = ds.EpsModel(lambda x, t: c * x, ds.VPLinear())
    p = problems.UserProblem(model, shape=(4,), fingerprint="lin")
    sched = p.default_schedule()
    x_T = p.x_T(16, seed=3)
    assert x_T.shape == (16, 4) and x_T.dtype == F64
    ref = p.reference(x_T, rtol=1e-10, atol=1e-10)
    s0, s1 = float(sched.sigma_bar(sched.t_max)), float(sched.sigma_bar(sched.t_min))
    a0, a1 = float(sched.alpha(sched.t_max)), float(sched.alpha(sched.t_min))
    exact = x_T / a0 * math.exp(c * (math.asinh(s1) - math.asinh(s0)))
    torch.testing.assert_close(ref, a1 * exact, rtol=1e-7, atol=1e-9)  # measured: 1.3e-8 relative at tol 1e-10
    # the same ODE on another VP schedule (within the λ range) reaches the same x̄ at the same λ
    cos = ds.VPCosine(t_min=0.05, t_max=0.9)
    m = p.model(cos)
    x = torch.randn(3, 4, dtype=F64)
    t_lin = float(sched.t_from_lambda(cos.lam(0.4)))
    torch.testing.assert_close(m.eps(x, 0.4), p.model().eps(x, t_lin), rtol=1e-12, atol=1e-12)


def test_default_fingerprint_hashes_parameters_not_the_name():
    class Shifted(Problem):
        def __init__(self, shift, name):
            self.shift, self.name, self.dim = torch.tensor([shift], dtype=F64), name, 1

        def model(self, schedule=None, dtype=F64):
            raise NotImplementedError

        def x_T(self, n, seed, schedule=None, t_start=None, dtype=F64):
            raise NotImplementedError

    assert Shifted(1.0, "a").fingerprint() == Shifted(1.0, "b").fingerprint()
    assert Shifted(1.0, "a").fingerprint() != Shifted(2.0, "a").fingerprint()
    bad = Shifted(1.0, "c")
    bad.fn = lambda: 0
    with pytest.raises(DiffsolveError, match="override .*fingerprint"):
        bad.fingerprint()


@pytest.mark.parametrize("spec,message", [
    ("no_such_module_xyz:model", "cannot import module 'no_such_module_xyz'"),
    ("./missing_file.py:model", "no file './missing_file.py'"),
    ("tests.test_user_problem:nothing_here", "has no attribute 'nothing_here'"),
    ("tests.test_user_problem:MODULE", "(str); a problem must be"),
    ("gmm-3d", "valid problem names are"),
])
def test_bad_problem_references_say_what_to_give(spec, message):
    with pytest.raises(DiffsolveError, match=message):
        problems.resolve(spec)
