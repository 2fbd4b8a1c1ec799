"""CUDA smoke check of the stochastic samplers: finite samples, exact NFE, moments of a Gaussian target.

Run: python benchmarks/sde_gpu_smoke.py   (data N(0.5, 0.3²) in 2-d, 4096 samples from N(0, I) at t = 1)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import diffsolve as ds  # noqa: E402
from tests.gaussian import GaussianData  # noqa: E402


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    schedule, data = ds.VPLinear(), GaussianData(mu=0.5, s=0.3)
    x = torch.randn(4096, 2, device=device, dtype=torch.float64, generator=torch.Generator(device).manual_seed(0))
    print(f"device {device}; target mean 0.5, variance 0.09 (standard errors 0.0047, 0.002)")
    for name in ("euler_maruyama", "srk", "ddpm", "sde_dpmpp2m"):
        nfe = 200
        sol = ds.sample(data.model(schedule), x, solver=name, nfe=nfe, seed=0)
        again = ds.sample(data.model(schedule), x, solver=name, nfe=nfe, seed=0)
        print(f"{name:15s} nfe {sol.nfe:4d}  finite {bool(torch.isfinite(sol.x).all())}  "
              f"same seed identical {bool(torch.equal(sol.x, again.x))}  device {sol.x.device}  "
              f"mean {sol.x.mean(0).tolist()}  var {sol.x.var(0).tolist()}")


if __name__ == "__main__":
    main()
