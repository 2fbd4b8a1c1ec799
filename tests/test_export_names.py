"""Community sampler names: each available name's diffsolve configuration gives the samples of the named peer sampler
with its default settings — diffusers' scheduler of that name on a DDPM table, and k-diffusion's sampler on its
Karras sigmas (a name diffusers lacks: on the name's own sigmas) — from the same x_T (≤ 1e-5 relative; diffusers rounds
its coefficients to float32)."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from pathlib import Path

import pytest
import torch

import diffsolve as ds
from diffsolve.errors import SolverError
from diffsolve.export import NAMES, resolve
from diffsolve.presets import is_name, table_markdown
from tests._expo_gmm import MixtureEps
from tests._kdiffusion import load_sampling

F64 = torch.float64
CALLS = (7, 10)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_names_resolve_case_insensitively_and_unknown_names_list_the_known():
    assert resolve("dpm++ 2m   KARRAS").name == "DPM++ 2M Karras" and resolve("euler A").name == "Euler a"
    assert is_name("UniPC") and is_name(" unipc ") and not is_name("dpmpp2m")
    with pytest.raises(SolverError, match=r"unknown sampler name 'DPM\+\+ 4M'.*known names: DPM\+\+ 2M, "):
        resolve("DPM++ 4M")
    assert not [n.name for n in NAMES if n.missing]  # every name of the table runs; a row that could not says why:
    future = dataclasses.replace(resolve("DPM++ 2M"), name="DPM++ 4M", missing="no 4M solver")
    with pytest.raises(SolverError, match=r"'DPM\+\+ 4M' is not available in diffsolve yet: no 4M solver"):
        future.config(ds.DiscreteDDPM(), 10)
    rows = table_markdown().splitlines()
    assert len(rows) == len(NAMES) + 2 and all(n.name in table_markdown() for n in NAMES)


def test_the_readme_shows_the_table():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert table_markdown() in readme


def test_the_budget_counts_the_step_to_zero():
    """nfe network calls in all: nfe − 1 grid steps plus the step to σ = 0 (or nfe steps to σ_min for DEIS); Heun's
    k steps of 2 calls and the step to σ = 0 spend 2k + 1 (k-diffusion: 2(n − 2) + 1 for n sigmas ending in 0), an
    even budget one call less."""
    schedule = ds.DiscreteDDPM()
    assert resolve("DPM++ 2M Karras").config(schedule, 10).grid.steps == 9
    assert resolve("DEIS").config(schedule, 10).grid.steps == 10
    for name in ("Heun", "Heun Karras"):
        assert [resolve(name).config(schedule, n).grid.steps for n in (3, 7, 9, 10, 19, 20)] == [1, 3, 4, 4, 9, 9]
        c, kwargs = resolve(name).config(schedule, 7), resolve(name).sample_kwargs(schedule, 7)
        assert c.variable == kwargs["variable"] == "sigma" and c.end == "zero"
        with pytest.raises(SolverError, match="needs: at least 3"):
            resolve(name).config(schedule, 2)


# ---- diffusers -------------------------------------------------------------------------------------------------
diffusers = pytest.importorskip("diffusers")
PEERS = {
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++",
                                                            "use_karras_sigmas": True}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler Karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {"clip_sample": False}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "DEIS": ("DEISMultistepScheduler", {}),
    # HeunDiscreteScheduler's own default table is 0.00085…0.012 (Stable Diffusion's): here DDPMScheduler's, as every
    # other scheduler's default (a pipeline's from_config carries its model's table)
    "Heun": ("HeunDiscreteScheduler", {"beta_start": 1e-4, "beta_end": 0.02}),
    "Heun Karras": ("HeunDiscreteScheduler", {"beta_start": 1e-4, "beta_end": 0.02, "use_karras_sigmas": True}),
}


@pytest.fixture(scope="module")
def table():
    schedule = ds.DiscreteDDPM(alphas_cumprod=diffusers.DDPMScheduler().alphas_cumprod.to(F64))
    net = MixtureEps(schedule, dim=16, components=4, scale=0.05, seed=3)
    return schedule, net, net.prior(8, seed=4)


def test_every_available_name_has_a_diffusers_check():
    available = {n.name for n in NAMES if not n.missing and n.diffusers and n.name != "iPNDM"}
    assert available == set(PEERS)


def diffusers_loop(scheduler, net, x_T: torch.Tensor, steps: int, seed: int) -> torch.Tensor:
    """diffusers' documented loop, num_inference_steps=steps (one network call per timestep: Heun's are 2·steps − 1).
    Noise: float64 z_i drawn as ds.sample(generator=) draws them, handed over as variance_noise (DPMSolverMultistep
    would draw float32) or drawn by the scheduler from the same generator."""
    scheduler.set_timesteps(steps)
    takes = inspect.signature(scheduler.step).parameters
    g = torch.Generator().manual_seed(seed)
    x = x_T * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = net(scheduler.scale_model_input(x, t), torch.full((x.shape[0],), float(t), dtype=F64))
        if "variance_noise" in takes:
            kw = {"variance_noise": torch.randn(x.shape, generator=g, dtype=F64)}
        else:
            kw = {"generator": g} if "generator" in takes else {}
        x = scheduler.step(out, t, x, **kw).prev_sample
    return x


# data-form solvers on decoupled (rounded) evaluation times: diffusers reads ε(x, round(t)) as the ε at the Karras σ
# itself when it forms x̂0, diffsolve's decoupled grid at the evaluation time (see the README table): measured gap
ROUNDED_KARRAS_GAP = {7: 6e-3, 10: 3e-3}


@pytest.mark.parametrize("calls", CALLS)
@pytest.mark.parametrize("name", list(PEERS))
def test_name_equals_diffusers_default_scheduler(table, name, calls):
    schedule, net, x_T = table
    cls, config = PEERS[name]
    kwargs = resolve(name).sample_kwargs(schedule, calls)
    scheduler = getattr(diffusers, cls)(**config)
    levels = kwargs["grid"].steps + (kwargs["end"] == "zero")  # the noise levels before σ = 0: num_inference_steps
    want = diffusers_loop(scheduler, net, x_T, levels, seed=11)
    # the same start: schedulers in x̄ = x/α start from x_T·init_noise_sigma, √(σ̄²+1)·x_T for most, but σ̄_max·x_T
    # for LMS (its init_noise_sigma); in the model's x that is x_T·init_noise_sigma·α(t_0)
    if float(scheduler.init_noise_sigma) != 1.0:
        x_T = x_T * float(scheduler.init_noise_sigma) * float(schedule.alpha(kwargs["grid"].t[0]))
    noise = {"generator": torch.Generator().manual_seed(11)} if name in ("DPM++ 2M SDE", "DPM++ 2M SDE Karras",
                                                                          "Euler a") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Heun at an even budget spends one call less (whole steps), and says so
        sol = ds.sample(ds.wrap(net, schedule, "eps"), x_T, solver=name, nfe=calls, **noise)  # the name as a solver
    spent = calls - (name.startswith("Heun") and calls % 2 == 0)
    assert sol.nfe == spent == len(scheduler.timesteps) and torch.equal(sol.grid.t, kwargs["grid"].t)
    bound = ROUNDED_KARRAS_GAP[calls] if name.startswith("DPM++ 2M") and name.endswith("Karras") else 1e-5
    assert rel(sol.x, want) <= bound, (name, calls, rel(sol.x, want))


def test_ipndm_equals_diffusers_ipndm_on_its_sigmas(table):
    """IPNDMScheduler steps on a σ list (trained_betas) with a v-output: the name's grid, to σ = 0. Its σ list and
    α = √(1 − σ²) are float32 (≈ 1e-5 at the noisy end, where α² = 1 − σ² cancels); in float64 the same code
    gives diffsolve's samples to 1e-10."""
    schedule, net, x_T = table
    kwargs = resolve("iPNDM").sample_kwargs(schedule, 10)
    points = kwargs["grid"].points
    sigmas = [p.sigma for p in points] + [0.0]
    want = ds.sample(ds.wrap(net, schedule, "eps"), x_T, **kwargs).x
    for wide in (False, True):
        theirs = diffusers.IPNDMScheduler(num_train_timesteps=11, trained_betas=sigmas)
        theirs.set_timesteps(10)
        if wide:
            theirs.betas = torch.tensor(sigmas, dtype=F64)
            theirs.alphas = (1.0 - theirs.betas**2) ** 0.5
        x = x_T.clone()
        for p, t in zip(points, theirs.timesteps):
            eps = net(x, torch.full((x.shape[0],), 1000 * p.t - 1, dtype=F64))
            x = theirs.step((eps - p.sigma * x) / p.alpha, t, x).prev_sample  # v with σ x + α v = ε
        assert rel(want, x) <= (1e-10 if wide else 5e-5), (wide, rel(want, x))


# ---- k-diffusion -----------------------------------------------------------------------------------------------
K = load_sampling()
K_PEERS = {"DPM++ 2M Karras": "sample_dpmpp_2m", "DPM++ 2M SDE Karras": "sample_dpmpp_2m_sde",
           "Euler Karras": "sample_euler", "LMS Karras": "sample_lms", "Heun Karras": "sample_heun",
           "DPM++ 3M SDE Karras": "sample_dpmpp_3m_sde"}
K_CALLS = {"Heun Karras": 19}  # 10 levels, as the others' 10 calls (Heun's 9 steps of 2 calls, then the step to 0)


@pytest.mark.skipif(K is None, reason="k-diffusion is not installed (pip install --no-deps k-diffusion)")
@pytest.mark.parametrize("name", list(K_PEERS))
def test_karras_names_equal_k_diffusion(name):
    """On a continuous schedule the name's grid is k-diffusion's get_sigmas_karras between the schedule's ends; the
    denoiser calls k-diffusion makes are the NFE diffsolve spends."""
    prob = ds.problems.get("gmm-2d")
    schedule = prob.default_schedule()
    model = prob.model(schedule, dtype=F64)
    x_T = prob.x_T(16, 0, schedule)
    calls = K_CALLS.get(name, 10)
    kwargs = resolve(name).sample_kwargs(schedule, calls)
    s_min, s_max = (float(schedule.sigma_bar(t)) for t in (schedule.t_min, schedule.t_max))
    torch.set_default_dtype(F64)
    try:
        sigmas = K.get_sigmas_karras(kwargs["grid"].steps + 1, s_min, s_max)
    finally:
        torch.set_default_dtype(torch.float32)
    made = []

    def denoiser(x_bar, sigma, **extra):
        made.append(1)
        p = ds.make_point(schedule, schedule.t_from_sigma_bar(sigma[0]))
        return model.x0_at(x_bar * p.alpha, p)

    g = torch.Generator().manual_seed(5)
    zs = [torch.randn(x_T.shape, generator=g, dtype=F64) for _ in range(9)]
    extra = {"noise_sampler": (lambda it: lambda s, s_next: next(it))(iter(zs))} if "SDE" in name else {}
    theirs = getattr(K, K_PEERS[name])(denoiser, x_T / float(schedule.alpha(schedule.t_max)), sigmas, disable=True,
                                       **extra)
    noise = {"generator": torch.Generator().manual_seed(5)} if "SDE" in name else {}
    sol = ds.sample(model, x_T, **kwargs, **noise)
    assert rel(sol.x, theirs) <= 1e-10 and sol.nfe == len(made) == calls


# names with no diffusers scheduler of that name: k-diffusion's sampler on the name's own sigmas (on a DDPM table)
K_ONLY = {"DPM++ 3M SDE": "sample_dpmpp_3m_sde"}


def test_every_available_name_without_diffusers_has_a_k_diffusion_check():
    assert {n.name for n in NAMES if not n.missing and not n.diffusers and n.name != "iPNDM"} == \
        set(K_ONLY) | {n for n in K_PEERS if not resolve(n).diffusers}


@pytest.mark.skipif(K is None, reason="k-diffusion is not installed (pip install --no-deps k-diffusion)")
@pytest.mark.parametrize("calls", CALLS)
@pytest.mark.parametrize("name", list(K_ONLY))
def test_name_equals_k_diffusion_on_its_sigmas(table, name, calls):
    """The name's grid exported as a sigma list (σ̄ at diffusers' integer steps, then 0), run by k-diffusion's
    sampler with the z that ds.sample(generator=) draws: ≤ 1e-10 (diffusers' 3rd-order sde-dpmsolver++ is another
    method: tests/test_sde.py)."""
    schedule, net, x_T = table
    model = ds.wrap(net, schedule, "eps")
    kwargs = resolve(name).sample_kwargs(schedule, calls)
    sigmas = ds.export.sigmas(kwargs["grid"], schedule)
    t_of = dict(zip(sigmas.tolist(), kwargs["grid"].t.tolist()))  # the node's own time (no σ̄ → t round trip)

    def denoiser(x_bar, sigma, **extra):
        p = ds.make_point(schedule, t_of[float(sigma[0])])
        return model.x0_at(x_bar * p.alpha, p)

    g = torch.Generator().manual_seed(5)
    theirs = getattr(K, K_ONLY[name])(denoiser, x_T / float(schedule.alpha(kwargs["grid"].t[0])), sigmas,
                                      disable=True, noise_sampler=lambda s, s_next: torch.randn(x_T.shape, generator=g,
                                                                                                 dtype=F64))
    sol = ds.sample(model, x_T, solver=name, nfe=calls, generator=torch.Generator().manual_seed(5))
    assert sol.nfe == calls and torch.equal(sol.grid.t, kwargs["grid"].t)
    assert rel(sol.x, theirs) <= 1e-10, rel(sol.x, theirs)
