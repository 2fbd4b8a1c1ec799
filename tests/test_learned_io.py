"""A learned solver loads wherever a solver is named: diffusers' scheduler, k-diffusion's sampler, the plain lists and
write_exports, `diffsolve tune --learn`, `diffsolve sample`, and the bench; each refuses another schedule or model.

The learned solvers here have seeded random Δ (and decoupled evaluation times), so that every comparison is against
`ds.sample(model, x, solver="file:…")` of the same weights, and differs from the base method on the same grid. An
unlearned one (Δ = None) is the base method bit for bit: in the bench its cell equals the base solver's on its grid.
"""

from __future__ import annotations

import json

import pytest
import torch

import diffsolve as ds
from diffsolve.cli import main
from diffsolve.export import k_sampler, sigmas, timesteps, write_exports
from diffsolve.solvers.exp.learned import LearnedMultistep, plan_sizes
from diffsolve.solvers.learned import LearnedSolver, network_fingerprint
from tests.test_export_k_diffusion import MODEL, PROB, SCHED, K, X, denoiser, rel

try:
    from tests.test_export_scheduler import SHAPE, run_pipeline, unet  # noqa: F401 (unet: a fixture)
except pytest.skip.Exception:  # no diffusers: its tests skip, the others run
    unet = None

F64 = torch.float64
TINY = ["--n", "32", "--candidates", "12", "--batch-size", "16", "--max-evals", "6", "--no-cache", "--no-progress"]
CASES = [("ipndm", {"order": 3}, True, 1), ("unipc", {"to_zero": True}, True, 2), ("dpmpp2m", {}, False, 1)]
IDS = ["ipndm3-eval", "unipc-zero-eval", "dpmpp2m"]


def make_learned(schedule, base: str, options: dict, decoupled: bool, conditions: int = 1, steps: int = 5,
                 seed: int = 1, learned: bool = True, **fields) -> LearnedSolver:
    """`base` with seeded Δ (0.3·N(0, 1) per weight; None when not `learned`) on a logsnr grid, its evaluation times
    moved 3 % earlier inside when `decoupled`."""
    grid = ds.grids.logsnr(schedule, steps)
    t_eval = None
    if decoupled:
        t_eval = grid.t.clone()
        t_eval[1:-1] *= 0.97
    grid = ds.grids.Grid(schedule, grid.t, "learned", t_eval)
    g = torch.Generator().manual_seed(seed)
    sizes = plan_sizes(LearnedMultistep(base, options, None, conditions).plan_on(grid))
    deltas = [(0.3 * torch.randn(k, generator=g, dtype=F64)).tolist() for k in sizes] if learned else None
    solver = LearnedMultistep(base, options, deltas, conditions)
    variable = "sigma" if base.startswith("ipndm") else "lambda"
    return LearnedSolver(solver, grid, steps + int(bool(options.get("to_zero"))), variable, **fields)


def base_on_its_grid(model, x, learned: LearnedSolver, tmp_path) -> torch.Tensor:
    """The base method (its options) on the learned solver's grid: what the weights change."""
    path = ds.grids.save(learned.grid, tmp_path / "base-grid.json")
    return ds.sample(model, x, solver=learned.solver.base.name, grid=f"file:{path}",
                     **{k: v for k, v in learned.solver.learned_options.items() if v is not None}).x


# ---- diffusers -----------------------------------------------------------------------------------------------
needs_diffusers = pytest.mark.skipif(unet is None, reason="diffusers is not installed")


@pytest.fixture(scope="module")
def unet_learned(unet, tmp_path_factory):
    """(the UNet's diffsolve model, {case id: learned file}) on the DDPM table."""
    import diffusers

    model = ds.interop.from_diffusers(unet, diffusers.DDPMScheduler())
    folder = tmp_path_factory.mktemp("learned")
    files = {i: make_learned(model.schedule, b, o, d, c, network=network_fingerprint(unet)).save(folder / f"{i}.json")
             for i, (b, o, d, c) in zip(IDS, CASES)}
    return model, files


@needs_diffusers
@pytest.mark.parametrize("case", IDS)
def test_scheduler_runs_the_learned_solver_as_sample_does(unet, unet_learned, case, tmp_path):
    """DDPMPipeline with DiffsolveScheduler(solver='file:…') gives ds.sample's samples (≤ 1e-6, as the other export
    tests), not the base method's; the saved scheduler needs no file and gives the same samples bit for bit."""
    import diffusers

    from diffsolve.export import DiffsolveScheduler

    model, files = unet_learned
    spec = f"file:{files[case]}"
    learned = LearnedSolver.load(files[case])
    scheduler = DiffsolveScheduler.from_config(diffusers.DDPMScheduler().config, solver=spec)
    assert scheduler.config.solver == learned.solver.name and scheduler.config.grid == "learned"
    got = run_pipeline(unet, scheduler, learned.nfe)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3), dtype=F64)
    want = ds.sample(model, x_T, solver=spec).x
    assert rel(got, want) <= 1e-6, rel(got, want)
    assert rel(base_on_its_grid(model, x_T, learned, tmp_path), want) > 1e-4  # the weights matter
    if learned.grid.decoupled:  # the network sees the evaluation times: N·t′ − 1
        torch.testing.assert_close(scheduler.timesteps[:5], 1000 * learned.grid.t_eval[:5] - 1, rtol=0, atol=1e-9)
    scheduler.save_pretrained(tmp_path / "s")
    files[case].rename(tmp_path / "moved.json")
    try:
        loaded = DiffsolveScheduler.from_pretrained(tmp_path / "s")
        assert torch.equal(run_pipeline(unet, loaded, learned.nfe), got)
    finally:
        (tmp_path / "moved.json").rename(files[case])
    obj = DiffsolveScheduler.from_config(diffusers.DDPMScheduler().config, solver=learned)
    assert torch.equal(run_pipeline(unet, obj, learned.nfe), got)


@needs_diffusers
def test_scheduler_refuses_what_the_learned_solver_was_not_learned_for(unet_learned):
    import diffusers

    from diffsolve.export import DiffsolveScheduler

    _, files = unet_learned
    spec = f"file:{files['ipndm3-eval']}"
    ddpm = diffusers.DDPMScheduler().config
    cases = [
        (lambda: DiffsolveScheduler.from_config(diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2").config,
                                                solver=spec), "was learned on schedule"),
        (lambda: DiffsolveScheduler.from_config(ddpm, grid=spec), "is a learned solver's file"),
        (lambda: DiffsolveScheduler.from_config(ddpm, solver=spec, grid="karras"), "brings its own grid"),
        (lambda: DiffsolveScheduler.from_config(ddpm, solver=spec, options={"order": 2}),
         "was learned with other options: order=2"),
        (lambda: DiffsolveScheduler.from_config(ddpm, solver=spec).set_timesteps(6), "makes 5 network calls"),
    ]
    for call, words in cases:
        with pytest.raises(ds.DiffsolveError, match=words):
            call()
    scheduler = DiffsolveScheduler.from_config(ddpm, solver=spec)
    scheduler.set_timesteps(5)
    with pytest.raises(ds.SolverError, match="whole grid"):
        scheduler.set_begin_index(2)


# ---- k-diffusion and the plain lists ---------------------------------------------------------------------------
needs_k = pytest.mark.skipif(K is None, reason="k-diffusion is not installed")


@needs_k
@pytest.mark.parametrize("case", IDS)
def test_k_sampler_runs_the_learned_solver_as_sample_does(case, tmp_path):
    """k_sampler('file:…') on its own sigmas, with k-diffusion's denoiser view of the model, equals ds.sample (x̄ at
    the end, x̂0 after a step to σ = 0; ≤ 1e-10 in float64, as the other k-diffusion tests)."""
    base, options, decoupled, conditions = CASES[IDS.index(case)]
    learned = make_learned(SCHED, base, options, decoupled, conditions, fingerprint=PROB.fingerprint())
    spec = f"file:{learned.save(tmp_path / 'l.json')}"
    sampler = k_sampler(spec)
    x_bar = X / float(SCHED.alpha(learned.grid.t[0]))
    got = sampler(denoiser(MODEL), x_bar, sampler.sigmas, disable=True)
    want = ds.sample(MODEL, X, solver=spec).x
    if learned.end == "sigma_min":
        want = want / float(SCHED.alpha(learned.grid.t[-1]))
    assert rel(got, want) <= 1e-10, rel(got, want)
    assert rel(base_on_its_grid(MODEL, X, learned, tmp_path), ds.sample(MODEL, X, solver=spec).x) > 1e-4
    assert torch.equal(k_sampler(learned)(denoiser(MODEL), x_bar, sampler.sigmas, disable=True), got)
    assert sampler.sigmas.tolist()[-1] == (0.0 if learned.end == "zero" else float(SCHED.sigma_bar(learned.grid.t[-1])))
    with pytest.raises(ds.GridError, match="runs on its own sigmas"):
        sampler(denoiser(MODEL), x_bar, ds.export.sigmas(ds.grids.karras(SCHED, 5), end=learned.end), disable=True)
    with pytest.raises(ds.SolverError, match="learned with other options"):
        k_sampler(spec, lower_order_final=not learned.solver.learned_options["lower_order_final"])


def test_lists_and_write_exports_take_a_learned_solver(tmp_path):
    """sigmas / timesteps of a learned solver are its grid's, ending where it ends; decoupled evaluation times have
    no plain list (refused with what runs them) but the k-diffusion export carries them in its sampler; another
    schedule or network is refused."""
    plain = make_learned(SCHED, "unipc", {"to_zero": True}, False, fingerprint=PROB.fingerprint())
    spec = f"file:{plain.save(tmp_path / 'plain.json')}"
    levels = SCHED.sigma_bar(plain.grid.t)
    assert torch.equal(sigmas(spec), torch.cat([levels, torch.zeros(1, dtype=F64)]))
    assert torch.equal(sigmas(plain, SCHED), sigmas(spec))
    closed = ds.EpsModel(lambda x, t: x, SCHED)  # a closed form: no weights, as the file's (network None)
    assert torch.equal(timesteps(spec, closed), SCHED.model_time(plain.grid.t) * closed.time_scale)
    with pytest.raises(ds.GridError, match="ends at 'zero'"):
        sigmas(spec, end="sigma_min")
    with pytest.raises(ds.SolverError, match="was learned on schedule"):
        sigmas(spec, ds.VPCosine())
    with pytest.raises(ds.SolverError, match=r"uses DiscreteDDPM\(num_train_steps=1000, table=") as refused:
        sigmas(spec, ds.DiscreteDDPM())  # re-audit N074: the schedule by its repr, not its 1000-entry table
    assert len(str(refused.value)) < 400
    with pytest.raises(ds.SolverError, match="learned for a network with weights fingerprint"):
        timesteps(spec, ds.EpsModel(torch.nn.Linear(2, 2), SCHED))  # a closed form's file, a model with weights
    decoupled = make_learned(SCHED, "ipndm", {"order": 3}, True, fingerprint=PROB.fingerprint())
    with pytest.raises(ds.GridError, match=r"k_sampler\(solver\)"):
        sigmas(decoupled)
    written = write_exports(decoupled, tmp_path / "d", ["k-diffusion"])
    assert [p.name for p in written] == ["d.json", "d.k-diffusion.json"]  # the file its sampler names is written
    data = json.loads(written[1].read_text())
    assert data["sampler"] == f"diffsolve.export.k_sampler('file:{tmp_path / 'd.json'}')"
    assert data["sigmas"] == k_sampler(decoupled).sigmas.tolist()
    with pytest.raises(ds.GridError, match="cannot carry the decoupled evaluation times"):
        write_exports(decoupled, tmp_path / "d", ["sigmas"])
    listed = write_exports(spec, tmp_path / "p", ["sigmas", "k-diffusion"])
    assert json.loads(listed[0].read_text())["sigmas"] == sigmas(spec).tolist()
    assert json.loads(listed[1].read_text())["sampler"] == f"diffsolve.export.k_sampler({spec!r})"


# ---- the command line and the bench ----------------------------------------------------------------------------
def test_cli_tune_learn_writes_a_learned_solver_that_sample_and_exports_use(tmp_path, capsys):
    out = tmp_path / "l.json"
    args = ["tune", "--problem", "gmm-2d", "--solver", "ipndm:order=3", "--nfe", "5", "--learn", "--conditions", "2",
            *TINY, "--out", str(out), "--export", "k-diffusion"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "learned-ipndm NFE 5 on gmm-2d" in printed and f"--solver file:{out}" in printed
    learned = LearnedSolver.load(out, SCHED, PROB.fingerprint())
    assert learned.solver.conditions == 2 and learned.nfe == 5 and learned.learning["conditions"] == 2
    kd = json.loads((tmp_path / "l.k-diffusion.json").read_text())
    assert kd["sampler"] == f"diffsolve.export.k_sampler('file:{out}')"
    assert main(["tune", "--problem", "gmm-2d", "--solver", "ipndm", "--nfe", "5", "--conditions", "2",
                 "--out", str(tmp_path / "g.json")]) == 2
    assert "add --learn" in capsys.readouterr().err
    assert main(["sample", "--problem", "gmm-2d", "--solver", f"file:{out}", "--n", "6",  # its own NFE
                 "--dtype", "float64", "--no-progress", "--out", str(tmp_path / "s")]) == 0
    from diffsolve.parallel_sample import sample_seeds, x_T_rows

    got = torch.load(tmp_path / "s" / "samples.pt")
    want = ds.sample(MODEL, x_T_rows(PROB, sample_seeds(0, 0, 6), SCHED), solver=f"file:{out}").x
    assert torch.equal(got["x"], want) and got["seeds"] == sample_seeds(0, 0, 6)
    assert main(["sample", "--problem", "gmm-64", "--solver", f"file:{out}", "--nfe", "5", "--n", "6",
                 "--no-progress", "--out", str(tmp_path / "s64")]) == 2
    assert "learned for problem fingerprint" in capsys.readouterr().err
    assert main(["sample", "--problem", "gmm-2d", "--solver", f"file:{out}", "--nfe", "6", "--n", "6",
                 "--no-progress", "--out", str(tmp_path / "s6")]) == 2
    assert "learned for nfe=5, not nfe=6" in capsys.readouterr().err
    assert main(["sample", "--problem", "gmm-2d", "--solver", "ipndm", "--n", "6", "--out", str(tmp_path / "s7")]) == 2
    assert "--nfe is required with --solver 'ipndm'" in capsys.readouterr().err


def test_bench_plans_a_learned_file_labels_it_and_refuses_it_up_front(tmp_path):
    """An unlearned file (Δ = None) is the base method bit for bit: its cell equals ipndm's on the same grid file;
    a learned one gets its own row, labelled; another problem or schedule is refused before any cell runs."""
    fp = PROB.fingerprint()
    unlearned = make_learned(SCHED, "ipndm", {"order": 3}, False, learned=False, fingerprint=fp)
    learned = make_learned(SCHED, "ipndm", {"order": 3}, True, fingerprint=fp)
    u, lf = unlearned.save(tmp_path / "u.json"), learned.save(tmp_path / "lrn.json")
    grid = ds.grids.save(unlearned.grid, tmp_path / "g.json")
    res = ds.bench.run("gmm-2d", solvers=[f"file:{u}", f"file:{lf}", "ipndm:order=3"], grids=[f"file:{grid}"],
                       nfe=[5], n=16, progress=False, report=False)
    by_label = {r.get("label") or f"{r['solver']} {r['grid']}": r for r in res.records}
    assert set(by_label) == {"learned-ipndm (u.json)", "learned-ipndm (lrn.json)", f"ipndm file:{grid}"}
    assert all(r["status"] == "ok" and r["nfe"] == 5 for r in res.records)
    assert by_label["learned-ipndm (u.json)"]["grid"] == "learned"
    assert by_label["learned-ipndm (u.json)"]["rmse"] == by_label[f"ipndm file:{grid}"]["rmse"]
    assert by_label["learned-ipndm (lrn.json)"]["rmse"] != by_label[f"ipndm file:{grid}"]["rmse"]
    for problem, settings, words in [("gmm-64", {}, "problem 'gmm-64': learned solver .* problem fingerprint"),
                                     ("gmm-2d", {"schedule": "cosine"}, "was learned on schedule")]:
        with pytest.raises(ds.DiffsolveError, match=words):
            ds.bench.run(problem, solvers=[f"file:{lf}"], nfe=[5], n=16, progress=False, report=False, **settings)
