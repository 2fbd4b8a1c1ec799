"""GPU check of the shipped models, PF-ODE likelihood and the diffusers adapter on CUDA.

Run: PYTHONPATH=. python benchmarks/gpu_models_check.py
"""

import diffusers
import torch

import diffsolve as ds
from diffsolve import nets
from diffsolve.interop import from_diffusers, grid_from_timesteps
from diffsolve.likelihood import log_likelihood

d = "cuda"
m = nets.load_pretrained("digits-8x8", device=d)
x = torch.randn(64, 1, 8, 8, device=d)
s = ds.sample(m, x, solver="dpmpp2m", nfe=20)
print("digits", s.x.device, s.nfe, bool(torch.isfinite(s.x).all()))
mc = nets.load_pretrained("digits-8x8", device="cpu")
sc = ds.sample(mc, x.cpu(), solver="dpmpp2m", nfe=20)
print("cpu-gpu max diff", float((s.x.cpu() - sc.x).abs().max()))
t = nets.load_pretrained("toy-2d", dtype=torch.float64, device=d)
xt = nets.toy_2d(500, 5).double().to(d)
for div in ("exact", "hutchinson"):
    r = log_likelihood(t, xt, divergence=div)
    print(div, r.logp.device, float(r.nats_per_dim.mean()), r.nfe)
torch.manual_seed(0)
u = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
    layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=4).to(d).eval()
sch = diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=False)
sch.set_timesteps(10)
x0 = torch.randn(2, 3, 8, 8, device=d)
y = x0.clone()
with torch.no_grad():
    for n in sch.timesteps:
        y = sch.step(u(y, n).sample, n, y).prev_sample
    mm = from_diffusers(u, sch)
    sol = ds.solve(ds.DDIMODE(mm), x0, grid_from_timesteps(mm.schedule, sch.timesteps), "euler")
print("ddim diff", float((sol.x - y).abs().max()), float(y.abs().max()))
