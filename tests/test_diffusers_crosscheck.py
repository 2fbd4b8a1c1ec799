"""diffsolve's exponential integrators against diffusers' schedulers: same DDPM table, same timesteps, same
analytic model, float64 samples. diffusers rounds its step coefficients to float32 (≈4e-6 relative at 10
steps on this problem is that floor), so final samples must agree to ≤1e-5 and to ≤1e-6 from 20 steps.

Grids: diffusers' own `timesteps` → DiscreteDDPM.t_from_step. Its last step goes to σ = 0
(final_sigmas_type="zero", DDIM's set_alpha_to_one) — diffsolve's to_zero=True — or to the table's first
entry (final_sigmas_type="sigma_min") — a grid that ends at t_from_step(0) = t_min.
"""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

import diffsolve as ds  # noqa: E402
from diffsolve import grids  # noqa: E402
from tests._expo_gmm import MixtureEps  # noqa: E402

F64 = torch.float64
STEPS = (5, 10, 20, 50)


def tolerance(steps: int) -> float:
    return 1e-6 if steps >= 20 else 1e-5


@pytest.fixture(scope="module")
def setup():
    ref = diffusers.DDIMScheduler()  # linear betas 1e-4…0.02, N = 1000 (the default of all of them)
    schedule = ds.DiscreteDDPM(alphas_cumprod=ref.alphas_cumprod.to(F64))
    net = MixtureEps(schedule, dim=64, components=8, scale=0.05, seed=3)
    x_T = net.prior(16, seed=4)
    return schedule, net, x_T


def run_diffusers(scheduler, net, x_T: torch.Tensor, steps: int, f64: bool = False, **step_kwargs) -> torch.Tensor:
    """diffusers' sampling loop; f64=True casts its sigmas to float64 so that its coefficients are float64 too."""
    scheduler.set_timesteps(steps)
    if f64:
        scheduler.sigmas = scheduler.sigmas.to(F64)
    x = x_T.clone()
    for t in scheduler.timesteps:
        eps = net(x, torch.full((x.shape[0],), float(t), dtype=F64))
        x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
    return x


def diffsolve_grid(schedule: ds.DiscreteDDPM, scheduler, to_zero: bool) -> grids.Grid:
    """The same times: diffusers' timesteps, then (unless the last step goes to σ = 0) training step 0."""
    t = schedule.t_from_step(scheduler.timesteps.to(F64))
    if not to_zero:
        t = torch.cat([t, schedule.t_from_step(torch.tensor([0.0]))])
    return grids.custom(schedule, t)


def compare(setup, scheduler, solver: str, steps: int, to_zero: bool, **options) -> float:
    schedule, net, x_T = setup
    want = run_diffusers(scheduler, net, x_T, steps, options.pop("f64", False), **options.pop("diffusers_step", {}))
    grid = diffsolve_grid(schedule, scheduler, to_zero)
    # the fixed order to the end unless a case says otherwise (diffsolve's default is automatic: on below 50 steps)
    if "lower_order_final" in ds.get_solver(solver).options:
        options.setdefault("lower_order_final", False)
    model = ds.wrap(net, schedule, "eps")
    # what the solver declares it integrates: the ODE in λ, or (ddim with eta > 0) the reverse SDE
    dynamics = ds.VPSDE(schedule).reverse(model) if ds.get_solver(solver).stochastic_for(**options) \
        else ds.ode(model, "lambda")
    sol = ds.solve(dynamics, x_T, grid, solver, to_zero=to_zero, **options)
    assert sol.nfe == steps, f"{solver}: spent {sol.nfe} evaluations, diffusers {steps}"
    assert torch.isfinite(sol.x).all()
    err = float((sol.x - want).norm() / want.norm())
    print(f"{solver} {options} steps={steps}: {err:.2e}")
    return err


@pytest.mark.parametrize("steps", STEPS)
def test_ddim(setup, steps):
    err = compare(setup, diffusers.DDIMScheduler(clip_sample=False), "ddim", steps, to_zero=True)
    assert err <= tolerance(steps), f"ddim, {steps} steps: relative difference {err:.2e}"


@pytest.mark.parametrize("steps", (10, 20))
def test_ddim_eta_same_noise(setup, steps):
    """η > 0 with the same seeded generator draws the same noise in the same order."""
    err = compare(setup, diffusers.DDIMScheduler(clip_sample=False), "ddim", steps, to_zero=True, eta=0.7,
                  generator=torch.Generator().manual_seed(5),
                  diffusers_step={"eta": 0.7, "generator": torch.Generator().manual_seed(5)})
    assert err <= tolerance(steps), f"ddim eta=0.7, {steps} steps: relative difference {err:.2e}"


DPM_CASES = [
    ("dpmpp2m", dict(algorithm_type="dpmsolver++", solver_order=2), {}),
    ("dpmpp3m", dict(algorithm_type="dpmsolver++", solver_order=3), {"variant": "diffusers"}),
    ("dpm2m", dict(algorithm_type="dpmsolver", solver_order=2, final_sigmas_type="sigma_min"), {}),
    ("dpm3m", dict(algorithm_type="dpmsolver", solver_order=3, final_sigmas_type="sigma_min"),
     {"variant": "diffusers"}),
]


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("solver,config,options", DPM_CASES, ids=[c[0] for c in DPM_CASES])
def test_dpm_multistep(setup, solver, config, options, steps):
    scheduler = diffusers.DPMSolverMultistepScheduler(**config)
    to_zero = scheduler.config.final_sigmas_type == "zero"
    err = compare(setup, scheduler, solver, steps, to_zero, lower_order_final=steps < 15, **options)
    assert err <= tolerance(steps), f"{solver} {config}, {steps} steps: relative difference {err:.2e}"


@pytest.mark.parametrize("algorithm,solver", [("dpmsolver++", "dpmpp2m"), ("dpmsolver", "dpm2m")])
def test_dpm2m_heun_form_is_the_taylor_variant(setup, algorithm, solver):
    scheduler = diffusers.DPMSolverMultistepScheduler(algorithm_type=algorithm, solver_type="heun",
                                                      final_sigmas_type="sigma_min")
    err = compare(setup, scheduler, solver, 20, False, variant="taylor")
    assert err <= 1e-6, f"{solver} taylor vs solver_type='heun', 20 steps: relative difference {err:.2e}"


@pytest.mark.parametrize("steps", (10, 20))
def test_unipc_noise_prediction(setup, steps):
    scheduler = diffusers.UniPCMultistepScheduler(predict_x0=False, final_sigmas_type="sigma_min")
    err = compare(setup, scheduler, "unipc", steps, False, form="noise", lower_order_final=True)
    assert err <= tolerance(steps), f"unipc on ε, {steps} steps: relative difference {err:.2e}"


def test_dpmpp2m_sigma_min(setup):
    scheduler = diffusers.DPMSolverMultistepScheduler(final_sigmas_type="sigma_min")
    err = compare(setup, scheduler, "dpmpp2m", 20, False)
    assert err <= 1e-6, f"dpmpp2m to sigma_min, 20 steps: relative difference {err:.2e}"


UNIPC_CASES = [("bh2", "zero"), ("bh2", "sigma_min"), ("bh1", "sigma_min")]


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("variant,final", UNIPC_CASES, ids=[f"{v}-{f}" for v, f in UNIPC_CASES])
def test_unipc(setup, variant, final, steps):
    scheduler = diffusers.UniPCMultistepScheduler(solver_type=variant, final_sigmas_type=final)
    err = compare(setup, scheduler, "unipc", steps, final == "zero", variant=variant, lower_order_final=True)
    assert err <= tolerance(steps), f"unipc {variant} to {final}, {steps} steps: relative difference {err:.2e}"


@pytest.mark.parametrize("steps", (10, 20))
def test_unipc_order3(setup, steps):
    scheduler = diffusers.UniPCMultistepScheduler(solver_order=3, final_sigmas_type="sigma_min")
    err = compare(setup, scheduler, "unipc", steps, False, order=4, lower_order_final=True)  # p = 3 + corrector
    assert err <= tolerance(steps), f"unipc order 3, {steps} steps: relative difference {err:.2e}"


def test_unipc_bh1_to_zero_is_finite_where_diffusers_is_not(setup):
    """diffusers' bh1 with final_sigmas_type='zero' multiplies B(h) = hh = −∞ by 0 in its last step (NaN);
    diffsolve's step to σ = 0 is x̂0 itself, finite, and next to the run that stops at σ_min."""
    schedule, net, x_T = setup
    scheduler = diffusers.UniPCMultistepScheduler(solver_type="bh1", final_sigmas_type="zero")
    theirs = run_diffusers(scheduler, net, x_T, 10)
    model = ds.wrap(net, schedule, "eps")
    dyn = ds.ode(model, "lambda")
    ours = ds.solve(dyn, x_T, diffsolve_grid(schedule, scheduler, True), "unipc", variant="bh1", to_zero=True,
                    lower_order_final=True)
    at_sigma_min = ds.solve(dyn, x_T, diffsolve_grid(schedule, scheduler, False), "unipc", variant="bh1",
                            lower_order_final=True)
    print(f"diffusers unipc bh1 to zero finite: {bool(torch.isfinite(theirs).all())}")
    assert torch.isfinite(ours.x).all()
    assert float((ours.x - at_sigma_min.x).norm() / at_sigma_min.x.norm()) < 0.05


@pytest.mark.parametrize("steps", STEPS)
def test_deis(setup, steps):
    scheduler = diffusers.DEISMultistepScheduler()  # order 2 by default; ends at sigma_min
    err = compare(setup, scheduler, "deis", steps, False, order=2, lower_order_final=steps < 15)
    assert err <= tolerance(steps), f"deis order 2, {steps} steps: relative difference {err:.2e}"


@pytest.mark.parametrize("steps", STEPS)
def test_deis_order3(setup, steps):
    """diffusers' 3rd-order DEIS subtracts two float32 antiderivatives ~ ρ log²ρ / h², a cancellation that grows as
    h shrinks (its float32 and float64 runs differ by 6e-6 at 20 steps, 8e-5 at 100); with its sigmas in float64
    (the same code, float64 coefficients) it is the method diffsolve computes."""
    scheduler = diffusers.DEISMultistepScheduler(solver_order=3)
    err = compare(setup, scheduler, "deis", steps, False, order=3, lower_order_final=steps < 15, f64=True)
    assert err <= tolerance(steps), f"deis order 3, {steps} steps: relative difference {err:.2e}"


def test_deis_order3_float32_floor(setup):
    """Against stock (float32-coefficient) diffusers, diffsolve's float64 DEIS-3 is closer to the float64 truth."""
    schedule, net, x_T = setup
    scheduler = diffusers.DEISMultistepScheduler(solver_order=3)
    stock = run_diffusers(scheduler, net, x_T, 50)
    exact = run_diffusers(diffusers.DEISMultistepScheduler(solver_order=3), net, x_T, 50, f64=True)
    model = ds.wrap(net, schedule, "eps")
    ours = ds.solve(ds.ode(model, "lambda"), x_T, diffsolve_grid(schedule, scheduler, False), "deis", order=3).x

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())
    assert rel(ours, exact) < 1e-6 < rel(stock, exact)
