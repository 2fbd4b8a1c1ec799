"""Exponential integrators in λ: DDIM, DPM-Solver(++) single- and multistep, DEIS, UniPC, adaptive DPM-Solver.

Importing this package registers them: ddim, dpm2, dpm3, dpmpp2s, dpm2m, dpm3m, dpmpp2m, dpmpp3m,
deis, unipc, dpm_adaptive; and the Adams–Bashforth methods in σ̄ ipndm, ipndm_v.
"""

from . import ddim, dpm_adaptive, ipndm, multistep, singlestep, unipc  # noqa: F401  (importing registers the solvers)
