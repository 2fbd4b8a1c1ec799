"""The seeded Brownian path shared by every stochastic solver, in the solver time τ.

Reverse-time SDEs run in τ = −t (forward ones in τ = t), so τ always increases. The path is a
torchsde BrownianInterval over the schedule's whole range in τ, with a dyadic (halfway) tree and
space-time Lévy area: W(τ) then depends on the seed alone, not on the grid, its step count, its end
points or the order of queries, and every solver (Euler–Maruyama, SRK, DDPM, SDE-DPM-Solver++)
reads the same W. Sums of increments over a fine grid equal those over a coarse one, which is what
makes strong errors (coarse vs fine solution on one path) meaningful.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torchsde
from torch import Tensor

from ..dynamics import Dynamics
from ..errors import SolverError
from ..grids import Grid
from ..valuecache import ValueCache

LEVY_AREA = "space-time"  # one kind for all solvers: W's samples depend on it, so it must not vary by solver


def tau_range(dynamics: Dynamics) -> tuple[float, float]:
    """The schedule's range [t_min, t_max] in solver time τ = ±t, as an increasing pair."""
    lo, hi = float(dynamics.schedule.t_min), float(dynamics.schedule.t_max)
    return (-hi, -lo) if dynamics.time_reversed else (lo, hi)


def grid_taus(dynamics: Dynamics, grid: Grid) -> list[float]:
    """The grid's times in solver time τ (increasing), as Python floats."""
    return (-grid.t if dynamics.time_reversed else grid.t).tolist()


def brownian_path(
    dynamics: Dynamics, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str,
    seed: int | None,
) -> torchsde.BrownianInterval:
    """W on the schedule's τ-range for states of `shape` (flattened to (batch, dim)), fixed by `seed`.

    tol = 1e-8 of the span: query times are resolved on the dyadic tree to that resolution, so W at a
    time depends only on the seed (seed=None draws a fresh one).
    """
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise SolverError(f"seed must be a non-negative integer or None, got {seed!r}")
    t0, t1 = tau_range(dynamics)
    batch = shape[0]
    dim = math.prod(shape[1:]) if len(shape) > 1 else 1
    return torchsde.BrownianInterval(
        t0=t0, t1=t1, size=(batch, dim), dtype=dtype, device=device, entropy=seed,
        tol=1e-8 * (t1 - t0), halfway_tree=True, levy_area_approximation=LEVY_AREA,
    )


def grid_path(
    dynamics: Dynamics, grid: Grid, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str,
    seed: int | None,
) -> torchsde.BrownianInterval:
    """A cheaper seeded path whose tree follows the grid's own steps (pass it as bm=).

    Reproducible for one seed and one grid, and a valid Brownian motion, so weak errors (distances of
    sample sets) are unaffected; but W depends on the grid's times, so two grids do not share a path:
    never use it for strong errors. A query costs a few normal draws instead of ~27 tree levels.
    """
    taus = grid_taus(dynamics, grid)
    dim = math.prod(shape[1:]) if len(shape) > 1 else 1
    return torchsde.BrownianInterval(
        t0=taus[0], t1=taus[-1], size=(shape[0], dim), dtype=dtype, device=device, entropy=seed,
        dt=min(b - a for a, b in zip(taus[:-1], taus[1:])), levy_area_approximation=LEVY_AREA,
    )


def check_path(bm: Any, dynamics: Dynamics, grid: Grid, x: Tensor, need_levy_area: bool = False) -> None:
    """Raise unless `bm` is a Brownian path in τ covering the grid, with (batch, dim) noise for x."""
    if not callable(bm) or not hasattr(bm, "shape"):
        raise SolverError(
            f"bm must be a torchsde Brownian path (e.g. diffsolve.solvers.brownian.brownian_path(...)), "
            f"got {type(bm).__name__}"
        )
    want = (x.shape[0], math.prod(x.shape[1:]) if x.ndim > 1 else 1)
    if tuple(bm.shape) != want:
        raise SolverError(
            f"bm has shape {tuple(bm.shape)} but the state {tuple(x.shape)} needs Brownian increments of "
            f"shape {want} (batch, flattened dimension); build it with brownian_path(dynamics, x.shape, ...)"
        )
    taus = grid_taus(dynamics, grid)
    start, end = getattr(bm, "_start", None), getattr(bm, "_end", None)
    if start is not None and end is not None and (taus[0] < start or taus[-1] > end):
        raise SolverError(
            f"bm covers τ ∈ [{start:.6g}, {end:.6g}] but the grid needs [{taus[0]:.6g}, {taus[-1]:.6g}] "
            f"(τ = {'−t' if dynamics.time_reversed else 't'}); build the path with brownian_path(dynamics, ...)"
        )
    if need_levy_area and getattr(bm, "levy_area_approximation", "none") == "none":
        raise SolverError(
            "this solver needs the space-time Lévy area of the path, but bm was built with "
            "levy_area_approximation='none'; build it with brownian_path(dynamics, ...) ('space-time')"
        )


MAX_SAMPLE_SEED = 2**30  # per-sample seeds s < 2^30 (the range of the earlier generator-per-row version)
W_STREAM, H_STREAM = 1, 2  # stream 0 is left to x_T (see diffsolve.distributed)
BLOCK_ELEMS = 4096  # a block holds at most max(1, 4096 // dim) steps of normals (fewer at the end of the grid) …
BATCH_BLOCK_ELEMS = 2**16  # … and at most max(1, 2^16 // (batch·dim)): its int64 words stay small (≤ 512 KiB)


def _signed(c: int) -> int:
    """A 64-bit word as torch.int64 holds it (two's complement)."""
    return c - 2**64 if c >= 2**63 else c


GAMMA = _signed(0x9E3779B97F4A7C15)  # SplitMix64's increment, ⌊2^64/φ⌋ (odd)
MIX1, MIX2 = _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)
ANGLE_OFFSET = 2**62  # float64: value c's radius word has counter c, its angle word counter c + 2^62


def mix64_(z: Tensor) -> Tensor:
    """SplitMix64's finaliser on int64 words, in place (products wrap mod 2^64): a bijection of 64-bit words.

    z ^= z >>> 30; z *= M1; z ^= z >>> 27; z *= M2; z ^= z >>> 31, each logical shift >>> s being the arithmetic
    one with the top s bits masked off (one scratch tensor for the three shifts).
    """
    t = torch.empty_like(z)
    for s, m in ((30, MIX1), (27, MIX2), (31, None)):
        torch.bitwise_right_shift(z, s, out=t)
        z.bitwise_xor_(t.bitwise_and_((1 << (64 - s)) - 1))
        if m is not None:
            z.mul_(m)
    return z


COUNTER_WORDS = ValueCache(64)


def counter_words(first: int, count: int, offset: int, device: torch.device) -> Tensor:
    """mix64(γ(c + offset)) for counters c = first … first+count−1 (shared by every row and batch; never mutate)."""
    def make() -> Tensor:
        ctr = torch.arange(first + offset, first + offset + count, dtype=torch.int64, device=device)
        return mix64_(ctr.mul_(GAMMA))
    return COUNTER_WORDS.get((first, count, offset, device), make)


def step_normals(keys: Tensor, first: int, steps: int, dim: int, dtype: torch.dtype) -> Tensor:
    """Standard normals z[i, r, j] for steps first … first+steps−1 of row keys keys[r], as (steps, rows, dim).

    Counter-based, a pure function of (key, i, j) whatever the rows or steps asked: coordinate j of step i has the
    counter c = i·dim + j and the word w = mix64(key + mix64(γc)); Box–Muller's first branch maps two uniforms
    u₁ ∈ (0, 1], u₂ ∈ [0, 1) to z = √(−2 ln u₁) cos 2πu₂. float32 (and narrower dtypes, computed in float32 and
    cast) takes u₁ from w's top 24 bits and u₂ from its low 24; float64 takes 53 bits of w for u₁ and of the word
    of c + 2^62 for u₂.
    """
    wide = dtype == torch.float64
    work = torch.float64 if wide else torch.float32
    rows = keys.view(1, -1, 1)

    def words(offset: int) -> Tensor:  # key + mix64(γc), written contiguously (a broadcast add may permute strides)
        out = torch.empty(steps, keys.shape[0], dim, dtype=torch.int64, device=keys.device)
        torch.add(counter_words(first * dim, steps * dim, offset, keys.device).view(steps, 1, dim), rows, out=out)
        return mix64_(out)

    w = words(0)
    if wide:
        bits, a, b = 53, w.bitwise_right_shift_(11), words(ANGLE_OFFSET).bitwise_right_shift_(11)
        a, b = a.bitwise_and_((1 << 53) - 1), b.bitwise_and_((1 << 53) - 1)
    else:
        bits, a, b = 24, w.bitwise_right_shift(40).bitwise_and_((1 << 24) - 1), w.bitwise_and_((1 << 24) - 1)
    radius = a.add_(1).to(work).mul_(2.0**-bits).log_().mul_(-2.0).sqrt_()
    return b.to(work).mul_(2 * math.pi * 2.0**-bits).cos_().mul_(radius).to(dtype)


def sample_keys(seeds: list[int], stream: int, device: torch.device | str) -> Tensor:
    """Row keys γ·(4 s_r + stream + 1) mod 2^64 of one stream (distinct: γ is odd), an int64 tensor on the device."""
    return torch.tensor(seeds, dtype=torch.int64, device=device).mul_(4).add_(stream + 1).mul_(GAMMA)


def per_sample_seeds(seed: Any) -> list[int] | None:
    """The list of per-sample seeds when `seed` is a sequence or 1-D integer tensor (None for an int or None)."""
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        return None
    if isinstance(seed, Tensor):
        if seed.ndim != 1 or seed.dtype.is_floating_point or seed.dtype.is_complex or seed.dtype == torch.bool:
            raise SolverError(f"per-sample seeds must be a 1-D integer tensor, got dtype {seed.dtype} and shape "
                              f"{tuple(seed.shape)}; pass e.g. seed=torch.arange(batch)")
        seed = seed.tolist()
    if not isinstance(seed, Sequence) or isinstance(seed, str) or not seed:
        raise SolverError(f"seed must be an integer, a non-empty list of integers (one per sample) or None, "
                          f"got {seed!r}")
    bad = [s for s in seed if isinstance(s, bool) or not isinstance(s, numbers.Integral)
           or not 0 <= s < MAX_SAMPLE_SEED]
    if bad:
        raise SolverError(f"per-sample seeds must be integers in [0, 2^30), got {bad[0]!r}; each sample's noise "
                          f"streams are keyed by the words 4s+1 and 4s+2, so keep s < 2^30")
    return [int(s) for s in seed]


class PerSampleNoise:
    """Brownian increments on a grid's steps, counter-based per row: row r's noise is a function of s_r alone.

    ΔW_i[r] = √Δτ_i z_{r,i}, with z_{r,i,j} = step_normals of key sample_keys(s_r, 1) at step i, coordinate j: a pure
    function of (s_r, stream, i, j), computed for all rows at once, so sample r is bit-identical alone and in any batch
    (and whatever the blocks of steps). For srk
    the space-time Lévy area H_i ~ N(0, Δτ_i/12) (independent of ΔW) comes from stream 2 and is returned as torchsde's
    U = Δτ (ΔW/2 + H). The noise is a valid Brownian motion sampled at the grid's times, but two grids see different
    paths: use it for sampling and weak errors, and brownian_path (one seed, grid-independent) for strong errors.
    Memory: one block per stream of max(1, min(BLOCK_ELEMS // dim, BATCH_BLOCK_ELEMS // (batch·dim))) steps (its int64
    words: 1–2 such tensors while drawing); cost: ~25 tensor ops per block, a multiply per step.
    """

    levy_area_approximation = LEVY_AREA

    def __init__(self, taus: list[float], seeds: list[int], dim: int, dtype: torch.dtype, device: torch.device | str):
        self._start, self._end = taus[0], taus[-1]
        self.shape = (len(seeds), dim)
        self.taus, self.seeds, self.dim, self.dtype, self.device = taus, seeds, dim, dtype, torch.device(device)
        self._step = {tau: i for i, tau in enumerate(taus[:-1])}
        self._keys: dict[int, Tensor] = {}
        self._blocks: dict[int, tuple[int, Tensor]] = {}  # stream → (first step of the block, (k, batch, dim))
        self.block = max(1, min(BLOCK_ELEMS // max(dim, 1), BATCH_BLOCK_ELEMS // max(len(seeds) * dim, 1)))

    def _draw(self, stream: int, first: int) -> Tensor:
        """The block of normals on `stream` for steps first…first+k−1, as a (k, batch, dim) tensor."""
        keys = self._keys.get(stream)
        if keys is None:
            keys = self._keys[stream] = sample_keys(self.seeds, stream, self.device)
        k = min(self.block, len(self.taus) - 1 - first)
        return step_normals(keys, first, k, self.dim, self.dtype)

    def _normals(self, stream: int, i: int) -> Tensor:
        """The (batch, dim) standard normals of step i on `stream`; steps are read in order, block by block."""
        first, block = self._blocks.get(stream, (0, None))
        if block is None:
            block = self._draw(stream, 0)
        while i >= first + block.shape[0]:
            first += block.shape[0]
            block = self._draw(stream, first)
        self._blocks[stream] = (first, block)
        if i < first:
            raise SolverError(f"per-sample noise is drawn in step order; step {i} was asked after step {first}")
        return block[i - first]

    def __call__(self, ta: Any, tb: Any, return_U: bool = False, return_A: bool = False) -> Any:
        a, b = float(ta), float(tb)
        i = self._step.get(a)
        if i is None or self.taus[i + 1] != b or return_A:
            raise SolverError(
                f"per-sample noise (seed= a list) gives increments on the grid's steps only, asked for "
                f"[{a:.6g}, {b:.6g}]{' with Lévy area A' if return_A else ''}; use a solver that steps on the grid, "
                f"or one seed (brownian_path) for queries between grid times"
            )
        h = b - a
        dw = self._normals(W_STREAM, i).mul(math.sqrt(h))
        if not return_U:
            return dw
        big_h = self._normals(H_STREAM, i).mul(math.sqrt(h / 12.0))
        return dw, (0.5 * dw + big_h).mul(h)


def per_sample_noise(dynamics: Dynamics, grid: Grid, x: Tensor, seeds: list[int]) -> PerSampleNoise:
    """Per-sample noise for the state x on the grid (one seed per row of x), after checks."""
    if len(seeds) != x.shape[0]:
        raise SolverError(f"{len(seeds)} per-sample seeds for a batch of {x.shape[0]} samples (state shape "
                          f"{tuple(x.shape)}); give one seed per row of x")
    dim = math.prod(x.shape[1:]) if x.ndim > 1 else 1
    return PerSampleNoise(grid_taus(dynamics, grid), seeds, dim, x.dtype, x.device)


def path_for(
    dynamics: Dynamics, grid: Grid, x: Tensor, seed: Any, bm: Any, need_levy_area: bool = False,
) -> Any:
    """The given path after checks, a fresh one from `seed`, or per-sample noise when seed is a list (one per row)."""
    if bm is None:
        seeds = per_sample_seeds(seed)
        if seeds is not None:
            return per_sample_noise(dynamics, grid, x, seeds)
        return brownian_path(dynamics, tuple(x.shape), x.dtype, x.device, seed)
    if seed is not None:
        raise SolverError("give either seed= or bm=, not both: a given path already fixes the noise")
    check_path(bm, dynamics, grid, x, need_levy_area)
    return bm


def check_seed_or_path(options: dict[str, Any]) -> None:
    """seed= and bm= both fix the noise: at most one of them."""
    per_sample_seeds(options.get("seed"))  # a bad list of seeds is refused before any work
    if options.get("seed") is not None and options.get("bm") is not None:
        raise SolverError("give either seed= or bm=, not both: a given path already fixes the noise")


def increments(bm: Any, taus: list[float]) -> list[Tensor]:
    """ΔW_i = W(τ_{i+1}) − W(τ_i) on consecutive grid times, each of shape (batch, dim)."""
    return [bm(a, b) for a, b in zip(taus[:-1], taus[1:])]


def check_noise_options(solver: str, options: dict[str, Any]) -> None:
    """seed=, bm= and generator= each fix the noise of a grid-stepping sampler: at most one of them."""
    check_seed_or_path(options)
    given = [k for k in ("seed", "bm") if options.get(k) is not None]
    if given and options.get("generator") is not None:
        raise SolverError(f"{solver} takes {given[0]}= or generator=, not both: each fixes the noise")


def step_noise(
    dynamics: Dynamics, grid: Grid, x: Tensor, seed: Any = None, bm: Any = None, generator: Any = None,
) -> Callable[[int], Tensor]:
    """z_i ~ N(0, I) of grid step i: ΔW_i/√Δτ_i on the shared Brownian path (seed=/bm=), or torch.randn of x's
    shape from `generator` (drawn per step, as diffusers does)."""
    if generator is not None:
        def drawn(i: int) -> Tensor:
            return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return drawn
    path, taus = path_for(dynamics, grid, x, seed, bm), grid_taus(dynamics, grid)
    scale = [1.0 / math.sqrt(b - a) for a, b in zip(taus[:-1], taus[1:])]

    def brownian(i: int) -> Tensor:
        return path(taus[i], taus[i + 1]).reshape(x.shape).mul(scale[i])  # out of place: the path caches it
    return brownian


NOISE_OPTIONS = ("seed", "bm", "generator")


class StepNoise:
    """For samplers that read one Gaussian per grid step (ddim with eta > 0, ddpm, sde_dpmpp2m/3m): the noise options
    are checked together (at most one of seed=, bm=, generator=) and become the step noise of `step_noise`."""

    name: str

    def check_together(self, options: dict[str, Any]) -> None:
        check_noise_options(self.name, options)

    def noise_source(
        self, dynamics: Dynamics, grid: Grid, x: Tensor, options: dict[str, Any]
    ) -> Callable[[int], Tensor] | None:
        """z_i = ΔW_i/√Δτ_i on the shared Brownian path (seed=/bm=), or torch.randn from generator= (popped)."""
        seed, bm, generator = (options.pop(k, None) for k in NOISE_OPTIONS)
        return step_noise(dynamics, grid, x, seed, bm, generator)
