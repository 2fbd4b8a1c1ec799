"""Shared fixtures: problems with exact answers from diffsolve.problems, and the one order-fitting helper.

Every exact ε, exact flow and reference in the tests comes from the library (GaussianMixture: ε, x̂0,
log p_t, exact samples, the closed-form flow of one Gaussian, the float64 reference); tests never write
those formulas again. Fitted orders go through diffsolve.bench.metrics.fitted_order, sample distances
through diffsolve.bench.metrics.sliced_w2.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence

import pytest
import torch
from torch import Tensor

import diffsolve as ds
from diffsolve import problems
from diffsolve.bench.metrics import fitted_order, rel_err
from diffsolve.problems import GaussianMixture
from tests.gaussian import GaussianData, gaussian


@pytest.fixture(autouse=True, scope="session")
def sigint_as_from_a_terminal():
    """Ctrl-C is Python's KeyboardInterrupt in every test (and SIG_DFL in the processes they start), even when the
    runner was started with SIGINT ignored (a background job of a non-interactive shell, nohup): the signal tests
    check diffsolve's handling of a signal the user can send, which such a runner would otherwise never deliver."""
    before = signal.getsignal(signal.SIGINT)
    if before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)

F64 = torch.float64
# One torch thread for the whole run: the tests' tensors are small, and on the 2-core box a second thread only contends
# (measured: the fast suite ~20 s quicker). Tests that need more set it themselves.
torch.set_num_threads(1)


def measured_order(
    run: Callable[[int], ds.Solution], reference: Tensor, steps: Sequence[int],
    metric: Callable[[Tensor, Tensor], float] = rel_err,
) -> tuple[float, list[float]]:
    """Order p of err ≈ C·NFE^(−p), least squares over every point: `run(n)` solves on an n-step grid,
    its error is `metric(sol.x, reference)` and its NFE the one it counted. Returns (p, the errors)."""
    errors, nfes = [], []
    for n in steps:
        sol = run(n)
        errors.append(metric(sol.x, reference))
        nfes.append(sol.nfe)
    order, used = fitted_order(nfes, errors, last=None)
    assert order is not None and len(used) == len(steps), (nfes, errors)
    return order, errors


@pytest.fixture(scope="session")
def order_of() -> Callable[..., tuple[float, list[float]]]:
    """The one order-fitting helper (`measured_order`), for tests that fit a convergence order."""
    return measured_order


@pytest.fixture
def gaussian_data() -> GaussianData:
    """Data N(0.5, 0.3² I) in any dimension, exact ε and exact flow, counting its network calls."""
    return GaussianData()


@pytest.fixture(scope="session")
def one_gaussian() -> GaussianMixture:
    """A 5-d Gaussian N(μ, diag(s²)) with seeded μ ~ N(0, I) and s ∈ [0.1, 1.1)."""
    g = torch.Generator().manual_seed(0)
    return gaussian(5, torch.randn(5, generator=g, dtype=F64), 0.1 + torch.rand(5, generator=g, dtype=F64))


@pytest.fixture(scope="session")
def gmm2d() -> GaussianMixture:
    """The registered 6-component 2-d mixture."""
    return problems.get("gmm-2d")


@pytest.fixture(scope="session")
def gmm64() -> GaussianMixture:
    """The registered 6-component 64-d mixture."""
    return problems.get("gmm-64")


@pytest.fixture(scope="session")
def gmm64_case(gmm64) -> tuple[GaussianMixture, ds.Schedule, Tensor, Tensor]:
    """(gmm-64, linear VP, 8 exact draws of p_T, their float64 reference end states)."""
    schedule = ds.VPLinear()
    x = gmm64.x_T(8, seed=0, schedule=schedule)
    return gmm64, schedule, x, gmm64.reference(x, schedule)


# ---- solver families from the registry, and the `gpu` marker --------------------------------------------
def fixed_step_solvers() -> list[str | ds.Solver]:
    """Deterministic fixed-step solvers with their own loop (what CUDA graphs capture and sync checks cover): the
    registered ones by name, and learned ones (tests/learned_cases.py: seeded weights on any grid)."""
    from tests.learned_cases import examples

    return [name for name, s in sorted(ds.SOLVERS.items())
            if not s.adaptive and not s.stochastic and not name.startswith("torchdiffeq_")] + examples()


def stochastic_solvers() -> list[str]:
    """The registered SDE samplers."""
    return [name for name, s in sorted(ds.SOLVERS.items()) if s.stochastic]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test argument `fixed_step_solver` or `stochastic_solver` runs once per such registered solver."""
    for arg, names in (("fixed_step_solver", fixed_step_solvers), ("stochastic_solver", stochastic_solvers)):
        if arg in metafunc.fixturenames:
            values = names()
            metafunc.parametrize(arg, values, ids=[v if isinstance(v, str) else v.name for v in values])


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` are collected everywhere and skipped where CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (gpu marker)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
