"""diffusers adapter: a tiny random UNet2DModel through diffsolve equals diffusers' own calls and DDIM loop."""

import pytest
import torch

import diffsolve as ds

diffusers = pytest.importorskip("diffusers")
from diffsolve.interop import from_diffusers, grid_from_timesteps, schedule_from_diffusers  # noqa: E402


def tiny_unet(seed: int = 0, out_channels: int = 3) -> "diffusers.UNet2DModel":
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=out_channels, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=4,
    )
    return unet.eval().requires_grad_(False)


def ddim(prediction_type: str, set_alpha_to_one: bool = False, **kw) -> "diffusers.DDIMScheduler":
    return diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                   prediction_type=prediction_type, set_alpha_to_one=set_alpha_to_one, **kw)


def run_both(unet, sched, steps: int, seed: int):
    """(x_T, diffusers' DDIM loop result, diffsolve's Euler-in-σ̄ solution on the same timesteps)."""
    sched.set_timesteps(steps)
    x_t = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    x = x_t.clone()
    for n in sched.timesteps:
        x = sched.step(unet(x, n).sample, n, x).prev_sample
    model = from_diffusers(unet, sched)
    sol = ds.solve(ds.DDIMODE(model, "sigma"), x_t, grid_from_timesteps(model.schedule, sched.timesteps), "euler")
    return x_t, x, sol, model


def test_eps_at_diffusers_timesteps_is_the_unet_output():
    unet = tiny_unet()
    model = from_diffusers(unet, ddim("epsilon"))
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for n in (0, 1, 137, 500, 999):
        t = float(model.schedule.t_from_step(n))
        torch.testing.assert_close(model.eps(x, t), unet(x, torch.tensor([n, n])).sample, rtol=0, atol=0)
    # the DDPM table is the scheduler's own (its float32 values)
    torch.testing.assert_close(model.schedule.alphas_cumprod.float(), ddim("epsilon").alphas_cumprod,
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_ddim_through_diffsolve_matches_diffusers_loop(prediction_type):
    sched = ddim(prediction_type)
    x_t, x, sol, _ = run_both(tiny_unet(seed=2), sched, steps=10, seed=3)
    # diffusers' last step goes from step 0 to ᾱ_0 (set_alpha_to_one=False): an identity that costs one call.
    assert sched.timesteps.tolist() == list(range(900, -1, -100)) and sol.nfe == 9
    torch.testing.assert_close(sol.x, x, rtol=1e-4, atol=1e-5)
    assert float((sol.x - x_t).abs().max()) > 0.1  # the comparison is not between two unchanged inputs


def test_set_alpha_to_one_final_step_is_the_x0_prediction():
    _, x, sol, model = run_both(tiny_unet(seed=4), ddim("epsilon", set_alpha_to_one=True), steps=5, seed=5)
    torch.testing.assert_close(model.x0(sol.x, model.schedule.t_min), x, rtol=1e-4, atol=1e-5)


def test_schedule_from_config_dict_and_learned_variance():
    cfg = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
           "beta_end": 0.012, "prediction_type": "epsilon"}
    ref = diffusers.DDPMScheduler(**cfg).alphas_cumprod
    torch.testing.assert_close(schedule_from_diffusers(cfg).alphas_cumprod.float(), ref, rtol=1e-6, atol=0)
    cos = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}
    torch.testing.assert_close(schedule_from_diffusers(cos).alphas_cumprod.float(),
                               diffusers.DDPMScheduler(**cos).alphas_cumprod, rtol=1e-5, atol=0)
    unet = tiny_unet(seed=6, out_channels=6)  # ε and a learned variance, as in improved DDPM
    model = from_diffusers(unet, cfg)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(model.eps(x, float(model.schedule.t_from_step(10))),
                               unet(x, 10).sample[:, :3], rtol=0, atol=0)


def test_wrong_inputs():
    with pytest.raises(ds.ModelError, match="prediction_type"):
        from_diffusers(tiny_unet(), ddim("epsilon"), prediction_type="flow")
    with pytest.raises(ds.ModelError, match="nn.Module"):
        from_diffusers(lambda x, t: x, ddim("epsilon"))
    with pytest.raises(ds.ScheduleError, match="beta_schedule"):
        schedule_from_diffusers({"beta_schedule": "sigmoid"})


def test_a_plain_velocity_network_goes_through_the_diffusers_adapter():
    """A user's own net(x, t) (not a diffusers model) with a FlowMatch scheduler: called as net(x, t), with
    diffusers' timestep 1000 σ, and one Euler step in σ̄ is diffusers' FlowMatch Euler step."""
    pytest.importorskip("diffusers")
    from diffusers import FlowMatchEulerDiscreteScheduler

    from diffsolve.interop import from_diffusers, grid_from_sigmas

    seen = []

    class Velocity(torch.nn.Module):
        def forward(self, x, t):
            seen.append(t.clone())
            return 0.5 * x - 1e-3 * t[:, None].to(x.dtype)

    sched = FlowMatchEulerDiscreteScheduler()
    sched.set_timesteps(4)
    model = from_diffusers(Velocity(), sched)
    x = torch.randn(3, 2, dtype=torch.float64)
    grid = grid_from_sigmas(model.schedule, sched.sigmas[1:-1])
    ours = ds.solve(ds.ode(model, "sigma"), x, grid, "euler").x
    want = x.clone()
    for i, t in enumerate(sched.timesteps[1:-1]):
        v = 0.5 * want - 1e-3 * t.to(want.dtype)
        want = want + (sched.sigmas[i + 2] - sched.sigmas[i + 1]).to(want.dtype) * v
    assert torch.allclose(ours, want, rtol=1e-5, atol=1e-6)
    assert torch.allclose(seen[0].double(), sched.timesteps[1].double(), rtol=1e-5)
