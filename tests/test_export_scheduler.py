"""DiffsolveScheduler: diffsolve's one-call-per-step solvers inside diffusers' protocol.

A diffusers pipeline (DDPMPipeline with a tiny random float64 UNet2DModel) driven by the scheduler gives the samples
`ds.sample` gives with the same solver, grid and x_T (standard and tuned grid files with decoupled evaluation
times); the scheduler equals diffusers' own scheduler of the algorithm on the same timesteps; a flow-matching loop
equals FlowMatchEulerDiscreteScheduler; save/load round-trips bit for bit; wrong use fails with the fix.
"""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

import diffsolve as ds  # noqa: E402
from diffsolve.errors import GridError, SolverError  # noqa: E402
from diffsolve.export import DiffsolveScheduler  # noqa: E402
from diffsolve.interop import from_diffusers  # noqa: E402

F64 = torch.float64
SHAPE = (2, 1, 8, 8)
# every solver the scheduler runs: (solver, options); the stochastic ones draw their noise from the generator
SOLVERS = [
    ("ddim", {}), ("euler", {}), ("dpmpp2m", {}), ("dpmpp3m", {}), ("dpm2m", {}), ("dpm3m", {}), ("deis", {}),
    ("unipc", {}), ("ipndm", {}), ("ipndm_v", {}), ("ddim", {"eta": 0.5}), ("ddpm", {}), ("sde_dpmpp2m", {}),
    ("sde_dpmpp3m", {}), ("dpmpp2m", {"to_zero": True}), ("unipc", {"to_zero": True}), ("ddpm", {"to_zero": True}),
    ("sde_dpmpp3m", {"to_zero": True}),
]
IDS = [s + "".join(f"-{k}={v}" for k, v in o.items()) for s, o in SOLVERS]


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    net = diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8).to(F64)
    with torch.no_grad():
        net.conv_out.weight.mul_(0.1)  # ε of order 0.1: samples of order 1 (x̂0 of a random net would explode)
        net.conv_out.bias.mul_(0.1)
    return net.eval()


@pytest.fixture(scope="module")
def tuned_file(tmp_path_factory, unet):
    """A grid file as `diffsolve tune` writes one, by hand: 5 logsnr steps, decoupled evaluation times."""
    schedule = from_diffusers(unet, diffusers.DDPMScheduler()).schedule
    grid = ds.grids.logsnr(schedule, 5)
    t_eval = grid.t.clone()
    t_eval[1:-1] *= 0.97
    path = tmp_path_factory.mktemp("grids") / "g.json"
    ds.grids.save(ds.grids.Grid(schedule, grid.t, "tuned", t_eval), path, solver="ipndm", options={"order": 3},
                  nfe=5, train_error=0.0)
    return path


def run_pipeline(unet, scheduler, calls: int, seed: int = 3) -> torch.Tensor:
    """DDPMPipeline's own loop; returns the last step's prev_sample (before the pipeline's clamp to [0, 1])."""
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    last = {}
    step = scheduler.step

    def recording(*args, **kwargs):
        out = step(*args, **kwargs)
        last["x"] = out.prev_sample
        return out

    scheduler.step = recording
    images = pipe(batch_size=SHAPE[0], generator=torch.Generator().manual_seed(seed), num_inference_steps=calls,
                  output_type="pt").images
    torch.testing.assert_close(images, (last["x"] / 2 + 0.5).clamp(0, 1))
    return last["x"]


def reference(unet, solver: str, options: dict, grid, calls: int, seed: int = 3, config=None) -> torch.Tensor:
    """ds.sample on the same model, grid and x_T (and, for stochastic solvers, the same generator's noise)."""
    model = from_diffusers(unet, config or diffusers.DDPMScheduler())
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(SHAPE, generator=g, dtype=F64)
    steps = None if isinstance(grid, str) and grid.startswith("file:") else calls - int(options.get("to_zero", 0))
    noise = {"generator": g} if ds.get_solver("ddim" if solver == "euler" else solver).stochastic_for(**options) \
        else {}
    return ds.sample(model, x_T, solver=solver, steps=steps, grid=grid, **options, **noise).x


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("solver,options", SOLVERS, ids=IDS)
def test_pipeline_equals_sample_on_a_standard_grid(unet, solver, options):
    scheduler = DiffsolveScheduler.from_config(diffusers.DDPMScheduler().config, solver=solver, grid="quadratic",
                                               options=options)
    got = run_pipeline(unet, scheduler, 6)
    want = reference(unet, solver, options, "quadratic", 6)
    assert rel(got, want) <= 1e-6, (solver, options, rel(got, want))
    assert torch.isfinite(want).all()


NODE = [(i, s) for i, s in zip(IDS, SOLVERS) if s[0] not in ("ddpm", "sde_dpmpp2m", "sde_dpmpp3m", "euler")]  # t_eval


@pytest.mark.parametrize("solver,options", [s for _, s in NODE], ids=[i for i, _ in NODE])
def test_pipeline_equals_sample_on_a_tuned_grid_file(unet, tuned_file, solver, options):
    """The network is called at the file's decoupled evaluation times, the steps use its times."""
    scheduler = DiffsolveScheduler.from_config(diffusers.DDPMScheduler().config, solver=solver,
                                               grid=f"file:{tuned_file}", options=options)
    calls = 5 + int(options.get("to_zero", 0))
    assert scheduler.config.grid_eval_times is not None
    got = run_pipeline(unet, scheduler, calls)
    want = reference(unet, solver, options, f"file:{tuned_file}", calls)
    assert rel(got, want) <= 1e-6, (solver, options, rel(got, want))


def test_the_network_sees_the_evaluation_times(unet, tuned_file):
    """timesteps = N·t′ − 1 at the file's evaluation times; the tuned file's solver and options are taken."""
    scheduler = DiffsolveScheduler.from_config(diffusers.DDPMScheduler().config, grid=f"file:{tuned_file}")
    assert scheduler.config.solver == "ipndm" and scheduler.config.options == {"order": 3}
    scheduler.set_timesteps()
    t_eval = torch.tensor(scheduler.config.grid_eval_times, dtype=F64)
    torch.testing.assert_close(scheduler.timesteps, (1000 * t_eval - 1)[:5], rtol=0, atol=1e-9)


@pytest.mark.parametrize("prediction_type,solver", [("sample", "dpmpp2m"), ("v_prediction", "unipc"),
                                                     ("v_prediction", "ddpm")])
def test_other_prediction_types(unet, prediction_type, solver):
    config = diffusers.DDPMScheduler(prediction_type=prediction_type).config
    scheduler = DiffsolveScheduler.from_config(config, solver=solver, grid="logsnr")
    got = run_pipeline(unet, scheduler, 5)
    want = reference(unet, solver, {}, "logsnr", 5, config=config)
    assert rel(got, want) <= 1e-6


def test_ddim_pipeline_passes_eta_and_works(unet):
    """DDIMPipeline passes eta= and use_clipped_model_output= to step: its default eta=0 is accepted."""
    pipe = diffusers.DDIMPipeline(unet=unet, scheduler=diffusers.DDIMScheduler())
    pipe.scheduler = DiffsolveScheduler.from_config(pipe.scheduler.config, solver="dpmpp2m")
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=5, output_type="pt")
    assert out.images.shape == (2, 1, 8, 8)
    with pytest.raises(SolverError, match=r"eta=0.5.*options=\{'eta': 0.5\}"):
        pipe(batch_size=2, num_inference_steps=5, eta=0.5, output_type="pt")


# ---- the same as diffusers' own schedulers -------------------------------------------------------------------
def diffusers_loop(scheduler, net, x_T, calls, **step_kw):
    scheduler.set_timesteps(calls)
    x = x_T * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = net(scheduler.scale_model_input(x, t), torch.full((x.shape[0],), float(t), dtype=F64))
        x = scheduler.step(out, t, x, **step_kw).prev_sample
    return x


def diffsolve_loop(scheduler, net, x_T, **set_kw):
    scheduler.set_timesteps(**set_kw)
    x = x_T.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(net(x, torch.full((x.shape[0],), float(t), dtype=F64)), t, x).prev_sample
    return x


@pytest.fixture(scope="module")
def mixture():
    from tests._expo_gmm import MixtureEps

    schedule = ds.DiscreteDDPM(alphas_cumprod=diffusers.DDPMScheduler().alphas_cumprod.to(F64))
    net = MixtureEps(schedule, dim=16, components=4, scale=0.05, seed=3)
    return net, net.prior(8, seed=4)


PEERS = [
    ("DPMSolverMultistepScheduler", {}, "dpmpp2m", {"to_zero": True}),
    ("DPMSolverMultistepScheduler", {"solver_order": 3}, "dpmpp3m", {"to_zero": True, "variant": "diffusers"}),
    ("UniPCMultistepScheduler", {}, "unipc", {"to_zero": True, "lower_order_final": True}),
    ("DEISMultistepScheduler", {}, "deis", {"order": 2, "lower_order_final": True}),
    ("DDIMScheduler", {"clip_sample": False}, "ddim", {"to_zero": True}),
]


@pytest.mark.parametrize("name,config,solver,options", PEERS, ids=[p[0] + str(p[1]) for p in PEERS])
def test_equals_diffusers_own_scheduler(mixture, name, config, solver, options):
    """On diffusers' own timesteps (set_timesteps(timesteps=…)), within diffusers' float32 coefficients."""
    net, x_T = mixture
    theirs = getattr(diffusers, name)(**config)
    want = diffusers_loop(theirs, net, x_T, 10)
    ours = DiffsolveScheduler.from_config(theirs.config, solver=solver, options=options)
    got = diffsolve_loop(ours, net, x_T, timesteps=theirs.timesteps)
    assert rel(got, want) <= 1e-5, rel(got, want)


def test_equals_diffusers_ipndm(mixture):
    """IPNDMScheduler on a σ list (trained_betas) of a VP schedule, with a v-prediction network: the same steps."""
    schedule = ds.VPLinear()
    grid = ds.grids.quadratic(schedule, 8)
    ours = DiffsolveScheduler(solver="ipndm", schedule=schedule.to_config(), prediction_type="v_prediction",
                              grid="custom:" + ",".join(repr(t) for t in grid.t.tolist()), options={"to_zero": True})
    ours.set_timesteps()
    net_eps, x_T = mixture

    def v_net(x, t):  # v = α ε − σ x0 of the mixture on VPLinear (t is the continuous time here)
        p = ds.make_point(schedule, float(t[0]))
        eps = net_eps.mixture.eps(x, t, schedule)
        return p.alpha * eps - p.sigma * (x - p.sigma * eps) / p.alpha

    sigmas = schedule.sigma(grid.t).tolist() + [0.0]
    theirs = diffusers.IPNDMScheduler(num_train_timesteps=9, trained_betas=sigmas)
    theirs.set_timesteps(9)
    x = x_T.clone()
    for mine, t in zip(ours.timesteps, theirs.timesteps):
        x = theirs.step(v_net(x, torch.full((x.shape[0],), float(mine), dtype=F64)), t, x).prev_sample
    got = diffsolve_loop(ours, v_net, x_T)
    assert rel(got, x) <= 1e-5, rel(got, x)


# ---- flow matching ---------------------------------------------------------------------------------------------
def velocity(x, timestep):
    """A smooth stand-in velocity network (its time input is diffusers' N·σ)."""
    w = torch.tensor([[0.6, -0.3, 0.1], [0.2, 0.8, -0.4], [-0.5, 0.1, 0.7]], dtype=F64)
    return torch.tanh(x @ w + timestep[:, None] / 1000.0) + 0.3 * x


def flow_case(fm, solver: str, x_T: torch.Tensor):
    """Our scheduler's loop on fm's sigmas, and what it must equal: ds.sample on a model of the same velocity net
    (a function of the start x and the sigmas it runs, ending at 0), and FlowMatchEuler's own loop for euler."""
    ours = DiffsolveScheduler.from_config(fm.config, solver=solver)
    got = diffsolve_loop(ours, velocity, x_T, sigmas=fm.sigmas)
    torch.testing.assert_close(ours.timesteps, fm.timesteps.to(F64), rtol=1e-6, atol=1e-4)
    model = from_diffusers(torch.nn.Identity(), fm)
    model.net = lambda x, t: velocity(x, t)

    def sample(x, sigmas):  # euler: FlowMatch's x ← x + (σ' − σ) v is the DDIM step (ds.sample's euler stops at σ_min)
        grid = ds.interop.grid_from_sigmas(model.schedule, sigmas.to(F64))
        return ds.sample(model, x, solver="ddim" if solver == "euler" else solver, grid=grid, to_zero=True).x

    if solver == "euler":
        x = x_T.clone()
        for t in fm.timesteps:
            x = fm.step(velocity(x, torch.full((4,), float(t), dtype=F64)), t, x).prev_sample
        assert rel(got, x) <= 1e-6, rel(got, x)
    return ours, got, sample


@pytest.mark.parametrize("solver", ["euler", "dpmpp2m", "ipndm", "unipc"])
def test_flow_matching_loop(solver):
    """With FlowMatchEulerDiscreteScheduler's own sigmas (shift 3, ending at 0): euler equals it (≤ 1e-6); every
    solver equals ds.sample on a FlowModel with the same grid."""
    fm = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    fm.set_timesteps(sigmas=torch.linspace(0.95, 0.05, 8).tolist())
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    ours, got, sample = flow_case(fm, solver, x_T)
    assert ours.num_inference_steps == 8 and ours.config.options == {"to_zero": True}
    assert rel(got, sample(x_T, fm.sigmas[:-1])) <= 1e-6


@pytest.mark.parametrize("solver", ["euler", "dpmpp2m", "unipc", "ipndm"])
def test_flow_from_pure_noise(solver):
    """FlowMatchEulerDiscreteScheduler's default sigmas start at σ = 1 (α = 0, outside diffsolve's Flow): the first
    step is x ← x + (σ₁ − 1)·v, then the solver from σ₁ — euler equals FlowMatchEuler (≤ 1e-6, same timesteps); every
    solver equals that step followed by ds.sample on the rest; set_begin_index skips it."""
    fm = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    fm.set_timesteps(8)
    assert float(fm.sigmas[0]) == 1.0
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    ours, got, sample = flow_case(fm, solver, x_T)
    assert ours.num_inference_steps == 8 and float(ours.sigmas[0]) == 1.0
    first = x_T + (float(fm.sigmas[1]) - 1.0) * velocity(x_T, torch.full((4,), 1000.0, dtype=F64))
    assert rel(got, sample(first, fm.sigmas[1:-1])) <= 1e-6
    ours.set_timesteps(sigmas=fm.sigmas)  # image-to-image from timesteps[2]: the step from σ = 1 is skipped
    ours.set_begin_index(2)
    x = first.clone()
    for t in ours.timesteps[2:]:
        x = ours.step(velocity(x, torch.full((4,), float(t), dtype=F64)), t, x).prev_sample
    assert rel(x, sample(first, fm.sigmas[2:-1])) <= 1e-6
    with pytest.raises(SolverError, match="all 8 steps are done"):
        ours.step(x, ours.timesteps[-1], x)


# ---- configs -----------------------------------------------------------------------------------------------
def test_save_and_load_round_trip_bit_for_bit(unet, tuned_file, tmp_path):
    """The config carries solver, options and the file's times and evaluation times: the file is not needed."""
    scheduler = DiffsolveScheduler.from_config(diffusers.DDPMScheduler().config, solver="unipc",
                                               grid=f"file:{tuned_file}", options={"to_zero": True})
    scheduler.save_pretrained(tmp_path / "s")
    copy = tmp_path / "moved.json"
    copy.write_bytes(tuned_file.read_bytes())
    loaded = DiffsolveScheduler.from_pretrained(tmp_path / "s")
    def own(config):
        return {k: v for k, v in config.items() if not k.startswith("_")}
    assert own(loaded.config) == own(scheduler.config)
    assert loaded.config.grid_times == scheduler.config.grid_times
    a, b = run_pipeline(unet, scheduler, 6), run_pipeline(unet, loaded, 6)
    assert torch.equal(a, b)


CONFIGS = [diffusers.DDPMScheduler, diffusers.DDIMScheduler, diffusers.DPMSolverMultistepScheduler,
           diffusers.EulerDiscreteScheduler]


@pytest.mark.parametrize("cls", CONFIGS + [diffusers.FlowMatchEulerDiscreteScheduler], ids=lambda c: c.__name__)
def test_from_config_of_other_schedulers(cls):
    """The schedule is the one from_diffusers builds for that config; the scheduler runs."""
    other = cls(shift=3.0) if cls is diffusers.FlowMatchEulerDiscreteScheduler else cls(beta_schedule="scaled_linear")
    ours = DiffsolveScheduler.from_config(other.config, solver="dpmpp2m", grid="logsnr")
    assert ours.schedule == from_diffusers(torch.nn.Identity(), other).schedule
    ours.set_timesteps(4)
    assert ours.timesteps.shape == (4,) and ours.order == 1 and ours.init_noise_sigma == 1.0


def test_add_noise_and_begin_index(unet):
    """add_noise is α x0 + σ ε at the node of a timestep; set_begin_index restarts the plan there."""
    scheduler = DiffsolveScheduler.from_config(diffusers.DDPMScheduler().config, solver="dpmpp2m")
    scheduler.set_timesteps(6)
    x0 = torch.randn(SHAPE, dtype=F64, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(SHAPE, dtype=F64, generator=torch.Generator().manual_seed(2))
    p = scheduler.program.points[2]
    torch.testing.assert_close(scheduler.add_noise(x0, noise, scheduler.timesteps[2:3]), p.alpha * x0 + p.sigma * noise)
    scheduler.set_begin_index(2)
    x = scheduler.add_noise(x0, noise, scheduler.timesteps[2:3])
    for t in scheduler.timesteps[2:]:
        x = scheduler.step(unet(x, t).sample, t, x).prev_sample
    model = from_diffusers(unet, diffusers.DDPMScheduler())
    grid = ds.grids.Grid(model.schedule, ds.grids.logsnr(model.schedule, 6).t[2:])
    want = ds.solve(ds.ode(model, "lambda"), scheduler.add_noise(x0, noise, scheduler.timesteps[2:3]), grid,
                    "dpmpp2m").x
    assert rel(x, want) <= 1e-12


# ---- wrong use -------------------------------------------------------------------------------------------------
def test_wrong_use_is_refused_with_the_fix(unet, tmp_path):
    config = diffusers.DDPMScheduler().config
    with pytest.raises(SolverError, match=r"'heun' calls the model 2 times per step.*use one of"):
        DiffsolveScheduler.from_config(config, solver="heun")
    with pytest.raises(SolverError, match=r"'dpm_adaptive' picks its own steps"):
        DiffsolveScheduler.from_config(config, solver="dpm_adaptive")
    with pytest.raises(SolverError, match=r"'dpm3' calls the model 3 times per step"):
        DiffsolveScheduler.from_config(config, solver="dpm3")
    with pytest.raises(SolverError, match=r"draws each step's noise itself.*seed"):
        DiffsolveScheduler.from_config(config, solver="ddpm", options={"seed": 1})
    other = tmp_path / "other.json"
    ds.grids.save(ds.grids.logsnr(ds.VPLinear(), 4), other)
    with pytest.raises(GridError, match=r"was made for schedule .*use the same schedule"):
        DiffsolveScheduler.from_config(config, solver="ipndm", grid=f"file:{other}")
    scheduler = DiffsolveScheduler.from_config(config, solver="dpmpp2m")
    x = torch.zeros(SHAPE, dtype=F64)
    with pytest.raises(SolverError, match=r"call set_timesteps"):
        scheduler.step(x, 999, x)
    scheduler.set_timesteps(3)
    ts = scheduler.timesteps
    with pytest.raises(SolverError, match=r"timesteps\[2\]\) but the next step is timesteps\[0\]"):
        scheduler.step(x, ts[2], x)
    for t in ts:
        scheduler.step(x, t, x)
    with pytest.raises(SolverError, match=r"all 3 steps are done; call set_timesteps"):
        scheduler.step(x, ts[-1], x)
    with pytest.raises(GridError, match=r"strictly descending \(noise → data\)"):
        scheduler.set_timesteps(sigmas=[0.5, 1.0, 4.0])
    with pytest.raises(GridError, match=r"exactly one of num_inference_steps, timesteps or sigmas"):
        scheduler.set_timesteps(3, sigmas=[4.0, 1.0])
    flow_config = diffusers.FlowMatchEulerDiscreteScheduler().config
    for stochastic in ("ddpm", "sde_dpmpp3m"):  # σ = 1 only with a deterministic solver
        flow = DiffsolveScheduler.from_config(flow_config, solver=stochastic)
        with pytest.raises(GridError, match=r"start at σ = 1 \(pure noise\).*drop the first entry, or use ddim"):
            flow.set_timesteps(sigmas=[1.0, 0.5, 0.2])
    with pytest.raises(GridError, match=r"straight to the end; give at least one σ between 1 and 0"):
        DiffsolveScheduler.from_config(flow_config, solver="ddim").set_timesteps(sigmas=[1.0, 0.0])
    with pytest.raises(GridError, match=r"a flow's σ must be < 1, got 1\.5"):
        DiffsolveScheduler.from_config(flow_config, solver="ddim").set_timesteps(sigmas=[1.5, 0.5])
    with pytest.raises(SolverError, match=r"takes no argument\(s\) foo"):
        scheduler.set_timesteps(3)
        scheduler.step(x, scheduler.timesteps[0], x, foo=1)


@pytest.mark.parametrize("rounding", ["int", "float16", "bfloat16"])
def test_a_timestep_rounded_by_the_pipeline_is_its_step_and_one_of_no_step_is_refused(mixture, rounding):
    """Pipelines may hand step() the timestep rounded (int, float16, bfloat16: spacing 4 near 1000): the same
    samples; a value that is no timestep of the plan (12345, NaN, a string) is refused (audit M15, M40, M41)."""
    net, x_T = mixture
    config = diffusers.DDPMScheduler().config
    exact = diffsolve_loop(DiffsolveScheduler.from_config(config, solver="dpmpp2m"), net, x_T, num_inference_steps=8)
    scheduler = DiffsolveScheduler.from_config(config, solver="dpmpp2m")
    scheduler.set_timesteps(8)
    x = x_T.clone()
    for t in scheduler.timesteps:
        passed = int(t) if rounding == "int" else t.to(getattr(torch, rounding))
        x = scheduler.step(net(x, torch.full((x.shape[0],), float(t), dtype=F64)), passed, x).prev_sample
    assert torch.equal(x, exact)
    scheduler.set_timesteps(8)
    for bad, text in ((12345, "12345, which is no timestep"), (float("nan"), "nan (not a finite number)"),
                      ("abc", "got 'abc'"), (float(scheduler.timesteps[0]) - 30.0, "no timestep of this scheduler")):
        with pytest.raises(SolverError) as e:
            scheduler.step(x, bad, x)
        assert text in str(e.value), str(e.value)


def test_the_device_timestep_check_matches_the_host_one():
    """scheduler.step's on-device comparison (one deferred read), run here on CPU tensors: rounded values are their
    step, another entry, 12345 and NaN are off."""
    from diffsolve.export.scheduler import timestep_off

    expected = torch.tensor([999.0, 749.25, 499.5, 249.75], dtype=F64)
    for value, off in ((999.0, False), (1000.0, False), (998.0, False), (749.25, True), (12345.0, True),
                       (float("nan"), True), (990.0, True)):
        got = timestep_off(expected, torch.tensor(value).to(torch.bfloat16 if value == 1000.0 else F64), 0)
        assert bool(got) == off, value


def test_a_list_that_ends_at_the_schedules_end_steps_to_zero(mixture):
    """DDIMScheduler's own timesteps end at 0, the DDPM table's last time: that call is the last step's, to σ = 0 (as
    diffusers' set_alpha_to_one), with or without options={'to_zero': True} (audit R2-A20: a repeat was refused)."""
    net, x_T = mixture
    theirs = diffusers.DDIMScheduler(clip_sample=False)
    want = diffusers_loop(theirs, net, x_T, 10)
    assert int(theirs.timesteps[-1]) == 0
    ours = DiffsolveScheduler.from_config(theirs.config, solver="ddim")
    got = diffsolve_loop(ours, net, x_T, timesteps=theirs.timesteps)
    assert ours.num_inference_steps == 10 and ours.config.options == {"to_zero": True}
    assert rel(got, want) <= 1e-5, rel(got, want)
    refusing = DiffsolveScheduler.from_config(theirs.config, solver="ddim", options={"to_zero": False})
    with pytest.raises(GridError, match=r"end at the schedule's last time \(0\).*drop the last value"):
        refusing.set_timesteps(timesteps=theirs.timesteps)


def test_listed_values_outside_the_schedule_or_not_finite_are_named_in_their_units():
    """timesteps / sigmas beyond the schedule's range are refused in the list's units with the range (audit R2-A16:
    the message spoke of internal times); NaN is refused as such (R2-A19: 'must be descending')."""
    scheduler = DiffsolveScheduler.from_config(diffusers.DDPMScheduler().config, solver="ddim")
    with pytest.raises(GridError, match=r"timesteps \[5000.0\] lie outside .* go from 999 \(noisiest\) down to 0;"):
        scheduler.set_timesteps(timesteps=[5000, 10])
    with pytest.raises(GridError, match=r"sigmas \[200.0\] lie outside .* go from 157.4"):
        scheduler.set_timesteps(sigmas=[200.0, 1.0])
    with pytest.raises(GridError, match=r"timesteps must be finite numbers, got \[900.0, nan, 10.0\]"):
        scheduler.set_timesteps(timesteps=[900, float("nan"), 10])


def test_bfloat16_timesteps_of_a_dense_grid_are_their_steps(mixture):
    """On a grid with timesteps 1 apart, bfloat16 rounding (spacing 4 near 1000) can land exactly on a neighbour:
    a float16/bfloat16 timestep within rounding of the next entry is that entry (audit R2-A14); a float64 timestep
    equal to another entry is still out of order."""
    net, x_T = mixture
    timesteps = list(range(999, 979, -1))
    exact = diffsolve_loop(DiffsolveScheduler.from_config(diffusers.DDPMScheduler().config, solver="ddim"), net, x_T,
                           timesteps=timesteps)
    scheduler = DiffsolveScheduler.from_config(diffusers.DDPMScheduler().config, solver="ddim")
    scheduler.set_timesteps(timesteps=timesteps)
    x = x_T.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(net(x, torch.full((x.shape[0],), float(t), dtype=F64)), t.to(torch.bfloat16), x).prev_sample
    assert torch.equal(x, exact)
    scheduler.set_timesteps(timesteps=timesteps)
    with pytest.raises(SolverError, match=r"timestep 998 \(timesteps\[1\]\) but the next step is timesteps\[0\]"):
        scheduler.step(x, torch.tensor(998.0, dtype=F64), x)


def test_a_numpy_step_count_is_a_step_count_and_a_batch_of_different_timesteps_is_refused():
    """set_timesteps(np.int64(5)) is 5 calls (re-audit R2-A18); step() with a batch of unequal timesteps is refused on
    the host (R2-A09: its first entry was taken), a batch of equal ones is that one."""
    import numpy as np

    scheduler = DiffsolveScheduler.from_config(diffusers.DDPMScheduler().config, solver="ddim")
    scheduler.set_timesteps(np.int64(5))
    assert scheduler.num_inference_steps == 5
    for bad in ("5", 5.0, True):
        with pytest.raises(GridError, match="num_inference_steps must be an integer >= 1"):
            scheduler.set_timesteps(bad)
    scheduler.set_timesteps(5)
    t, x = scheduler.timesteps, torch.randn(3, 2, dtype=F64)
    with pytest.raises(SolverError, match="a batch of different timesteps"):
        scheduler.step(x, torch.stack([t[0], t[0], t[1]]), x)
    assert scheduler.step(x, torch.stack([t[0]] * 3), x).prev_sample.shape == x.shape
