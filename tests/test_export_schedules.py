"""Plain lists out: ds.export.sigmas / timesteps of a grid, their inverse maps, and write_exports beside a grid file."""

from __future__ import annotations

import json

import pytest
import torch

import diffsolve as ds
from diffsolve.errors import GridError
from diffsolve.export.schedules import noise_levels, times_from_network, times_from_noise_levels

F64 = torch.float64


@pytest.mark.parametrize("schedule", [ds.VPLinear(), ds.DiscreteDDPM(), ds.Flow(t_min=1e-3, t_max=0.999, shift=3.0)],
                         ids=repr)
def test_noise_levels_and_network_times_invert(schedule):
    grid = ds.grids.logsnr(schedule, 6)
    torch.testing.assert_close(times_from_noise_levels(schedule, noise_levels(schedule, grid.t)), grid.t,
                               rtol=1e-12, atol=0)
    sigmas = ds.export.sigmas(grid, schedule)
    assert sigmas[-1] == 0 and bool((sigmas[1:] < sigmas[:-1]).all())
    expected = schedule.sigma(grid.t) if isinstance(schedule, ds.Flow) else schedule.sigma_bar(grid.t)
    torch.testing.assert_close(sigmas[:-1], expected, rtol=0, atol=0)
    model = ds.wrap(lambda x, t: x, schedule, "velocity" if isinstance(schedule, ds.Flow) else "eps",
                    **({"time_scale": 1000.0} if isinstance(schedule, ds.Flow) else {}))
    steps = ds.export.timesteps(grid, model)
    torch.testing.assert_close(times_from_network(schedule, steps, model.time_scale), grid.t, rtol=1e-12, atol=0)


def test_ddpm_timesteps_are_diffusers_integer_steps_on_the_knots():
    schedule = ds.DiscreteDDPM()
    grid = ds.interop.grid_from_timesteps(schedule, [999, 749, 499, 249, 0])
    assert ds.export.timesteps(grid, ds.wrap(lambda x, t: x, schedule)).tolist() == [999, 749, 499, 249, 0]
    diffusers = pytest.importorskip("diffusers")
    theirs = ds.interop.schedule_from_diffusers(diffusers.DDPMScheduler())  # the float32 table: another schedule
    grid = ds.interop.grid_from_timesteps(theirs, [999, 749, 499, 249, 0])
    assert ds.export.timesteps(grid, diffusers.DDPMScheduler()).tolist() == [999, 749, 499, 249, 0]


def test_lists_are_refused_where_they_cannot_express_the_grid(tmp_path):
    schedule = ds.VPLinear()
    grid = ds.grids.logsnr(schedule, 4)
    decoupled = ds.grids.Grid(schedule, grid.t, "tuned", grid.t * 0.99 + 0.01 * schedule.t_min)
    with pytest.raises(GridError, match=r"decoupled times.*DiffsolveScheduler \(grid='file:…'\)"):
        ds.export.sigmas(decoupled, schedule)
    with pytest.raises(GridError, match=r"lies on VPLinear.*target uses DiscreteDDPM"):
        ds.export.sigmas(grid, ds.DiscreteDDPM())
    with pytest.raises(GridError, match=r"end must be one of 'zero', 'sigma_min'"):
        ds.export.sigmas(grid, end="σ=0")
    with pytest.raises(GridError, match="unknown export kind"):
        ds.export.write_exports(grid, tmp_path / "g", ["pdf"])
    with pytest.raises(GridError, match="decoupled"):
        ds.export.write_exports(decoupled, tmp_path / "g", ["sigmas"])


def test_write_exports_beside_a_tuned_grid(tmp_path):
    """sigmas and k-diffusion lists (with the final 0 when the solver ends at σ = 0) and a DiffsolveScheduler dir
    whose config reproduces the grid's times and evaluation times bit for bit."""
    from diffsolve.tuning import TunedGrid

    schedule = ds.DiscreteDDPM()
    base = ds.grids.logsnr(schedule, 5)
    tuned = TunedGrid(grid=ds.grids.Grid(schedule, base.t, "tuned"), solver="unipc", options={"to_zero": True},
                      nfe=6, variable="lambda", problem="p", fingerprint="f", train_error=0.1, heldout_error=0.1,
                      start="dp", start_train_error=0.2, start_heldout_error=0.2, cost_nfe=0, cost_seconds=0.0)
    paths = ds.export.write_exports(tuned, tmp_path / "g", ["sigmas", "k-diffusion"])
    sig = json.loads(paths[0].read_text())
    assert sig["sigmas"] == ds.export.sigmas(base, schedule).tolist() and sig["end"] == "zero"
    k = json.loads(paths[1].read_text())
    assert k["sampler"] == "diffsolve.export.k_sampler('unipc')" and k["sigmas"][-1] == 0.0
    pytest.importorskip("diffusers")
    from diffsolve.export import DiffsolveScheduler

    decoupled = ds.grids.Grid(schedule, base.t, "tuned", base.t * 0.98 + 0.02 * schedule.t_min)
    tuned.grid = decoupled
    (path,) = ds.export.write_exports(tuned, tmp_path / "g", ["diffusers"])
    loaded = DiffsolveScheduler.from_pretrained(path.parent)
    assert loaded.config.solver == "unipc" and loaded.config.options == {"to_zero": True}
    assert torch.equal(torch.tensor(loaded.config.grid_eval_times, dtype=F64), decoupled.t_eval)
    loaded.set_timesteps()
    assert torch.equal(loaded.program.points[0].t * torch.ones(1, dtype=F64), decoupled.t[:1])
    assert loaded.timesteps.tolist() == (1000 * decoupled.t_eval - 1)[:6].tolist()


def test_tune_export_writes_each_kind_beside_the_grid_and_checks_before_tuning(tmp_path, capsys):
    """diffsolve tune --export diffusers,k-diffusion,sigmas writes them beside the grid file; the sigma lists equal
    the grid's own; a list of sigmas with decoupled evaluation times, or an unknown kind, is refused before tuning."""
    pytest.importorskip("diffusers")
    from diffsolve.cli import main
    from diffsolve.export import sigmas

    out = tmp_path / "g.json"
    args = ["tune", "--problem", "gmm-2d", "--solver", "ipndm:order=3", "--nfe", "5", "--n", "32", "--no-progress",
            "--out", str(out)]
    assert main(args + ["--export", "diffusers,k-diffusion,sigmas", "--no-eval-times"]) == 0
    grid = ds.grids.build(f"file:{out}", ds.VPLinear())
    listed = json.loads((tmp_path / "g.sigmas.json").read_text())
    assert listed["sigmas"] == sigmas(grid, end="sigma_min").tolist() and listed["end"] == "sigma_min"
    assert (tmp_path / "g.diffusers" / "scheduler_config.json").exists()
    assert "k_sampler('ipndm'" in json.loads((tmp_path / "g.k-diffusion.json").read_text())["sampler"]
    capsys.readouterr()
    for extra, words in ((["--export", "sigmas"], "--no-eval-times"), (["--export", "onnx"], "unknown export kind")):
        assert main(args + ["--out", str(tmp_path / "h.json")] + extra) == 2
        assert words in capsys.readouterr().err and not (tmp_path / "h.json").exists()
