"""Log-likelihood through the probability-flow ODE (the instantaneous change of variables).

Along dx/dt = f(x, t) the marginal density obeys d log p_t(x_t)/dt = −∇·f(x_t, t), so with the
augmented state [x, ℓ], dℓ/dt = ∇·f and ℓ(t_end) = 0, integrating from t_end (data) to t_max (noise):

    log p_{t_end}(x) = log p_{t_max}(x_{t_max}) + ℓ(t_max).

The divergence is exact (d backward passes) or Hutchinson's estimate vᵀ(∂f/∂x)v with probes v fixed
over the whole solve (Rademacher or Gaussian, seeded). The prior log p_{t_max} defaults to N(0, I),
which for a VP schedule is the exact marginal only in the limit α_{t_max} → 0: the error of that
approximation is of order α_{t_max}² ‖x_0‖² (pass `prior=` with the exact marginal when it is known).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchdiffeq
from torch import Tensor

from .checks import MIN_TOL, Option, positive_float, positive_int, tolerance
from .dynamics import ProbabilityFlowODE
from .errors import DiffsolveError, ModelError
from .models import Model
from .points import make_point
from .schedules import as_f64
from .solvers.torchdiffeq_ode import ADAPTIVE_METHODS, FIXED_METHODS

DIVERGENCES = ("exact", "hutchinson")
METHOD = Option("method", "choice", "dopri5", "the torchdiffeq solver of the probability-flow ODE",
                choices=tuple(ADAPTIVE_METHODS) + tuple(FIXED_METHODS))


def check_tolerances(rtol: float, atol: float, example: str) -> None:
    """rtol and atol of the adaptive solve, each in [MIN_TOL, 1)."""
    for tol, what in ((rtol, "rtol"), (atol, "atol")):
        tolerance(what, 1e-6, "a tolerance of the adaptive solve", below=1.0).check(
            tol, fix=f"tolerances of the adaptive solve are finite, >= {MIN_TOL:g} and < 1, {example}")
PROBES = ("rademacher", "gaussian")


def standard_normal_logp(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over all non-batch dimensions."""
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * (flat * flat).sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


@dataclass
class Likelihood:
    """Per-sample results in nats; `bits_per_dim` follows `data_scale` (see `log_likelihood`)."""

    logp: Tensor  # log p_{t_end}(x), nats, shape (B,)
    prior_logp: Tensor  # log p_{t_max}(x_{t_max})
    delta_logp: Tensor  # ∫ ∇·f dt from t_end to t_max
    z: Tensor  # x_{t_max}, the ODE's image of x
    nfe: int  # network evaluations (counted by the model)
    dim: int
    bits_per_dim: Tensor  # −(logp + d log data_scale)/(d log 2)

    @property
    def nats_per_dim(self) -> Tensor:
        return -self.logp / self.dim


def exact_divergence(f: Tensor, x: Tensor) -> Tensor:
    """∇·f = Σ_i ∂f_i/∂x_i by one backward pass per dimension (x must require grad).

    Summing over the batch before differentiating assumes each sample's output depends on that sample
    only (true for networks without batch statistics, e.g. GroupNorm or BatchNorm in eval mode).
    """
    ff = f.reshape(f.shape[0], -1)
    div = torch.zeros(f.shape[0], dtype=f.dtype, device=f.device)
    n = ff.shape[1]
    for i in range(n):
        (g,) = torch.autograd.grad(ff[:, i].sum(), x, retain_graph=i < n - 1)
        div = div + g.reshape(g.shape[0], -1)[:, i]
    return div


def hutchinson_divergence(f: Tensor, x: Tensor, probes: list[Tensor]) -> Tensor:
    """∇·f ≈ mean_k v_kᵀ (∂f/∂x) v_k, one vector-Jacobian product per probe v_k."""
    est = torch.zeros(f.shape[0], dtype=f.dtype, device=f.device)
    for k, v in enumerate(probes):
        (g,) = torch.autograd.grad(f, x, grad_outputs=v, retain_graph=k < len(probes) - 1)
        est = est + (g * v).reshape(g.shape[0], -1).sum(1)
    return est / len(probes)


def draw_probes(shape: torch.Size, n: int, kind: str, seed: int, dtype: torch.dtype,
                device: torch.device) -> list[Tensor]:
    """n probe vectors of `shape` with E[v vᵀ] = I, from a seeded CPU generator."""
    if kind not in PROBES:
        raise DiffsolveError(f"unknown probe distribution {kind!r}; valid ones are {', '.join(PROBES)}")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        v = torch.randn(shape, generator=gen, dtype=torch.float64)
        if kind == "rademacher":
            v = torch.sign(v)
        out.append(v.to(device=device, dtype=dtype))
    return out


def _check_inputs(model: Model, x: Tensor, divergence: str, probes: int, rtol: float, atol: float, method: str,
                  data_scale: float) -> float:
    """log_likelihood's arguments, checked before any work; the data scale as a float."""
    if divergence not in DIVERGENCES:
        raise DiffsolveError(
            f"unknown divergence {divergence!r}; valid ones are {', '.join(DIVERGENCES)} "
            f"(exact costs one backward pass per dimension, hutchinson one per probe)"
        )
    positive_int(probes, "probes", "give the number of Hutchinson probes, e.g. 1")
    if divergence == "exact" and probes != 1:  # the exact trace draws no probes: more would silently do nothing
        raise DiffsolveError(f"probes={probes} counts Hutchinson probes, but the divergence is 'exact' (it draws "
                             f"none); give divergence='hutchinson' (command line: --divergence hutchinson) for "
                             f"probes, or leave probes out")
    check_tolerances(rtol, atol, "e.g. 1e-6")
    METHOD.check(method, fix="adaptive ones control the error (rtol/atol); dopri5 is the default")
    data_scale = positive_float(data_scale, "data_scale", "it is dx/du for data on a unit-spaced lattice, e.g. 2/K "
                                                          "for K levels mapped to [-1, 1]; 1.0 for continuous data")
    if not isinstance(model, Model):
        raise ModelError(f"log_likelihood takes a diffsolve Model, got {type(model).__name__}; wrap the network "
                         f"first, e.g. diffsolve.EpsModel(net, diffsolve.VPLinear())")
    if model.coords != "vp":
        raise ModelError("log_likelihood works in VP coordinates; wrap the network with coords='vp'")
    if not isinstance(x, Tensor) or not torch.is_floating_point(x) or x.ndim < 2:
        raise ModelError(
            f"x must be a floating-point tensor of shape (batch, ...), got "
            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
        )
    model.check_input(x)
    if not bool(torch.isfinite(x).all()):  # one read at entry (the adaptive solve reads every step anyway)
        bad = int((~torch.isfinite(x.reshape(x.shape[0], -1))).any(1).nonzero()[0, 0])
        raise ModelError(f"x holds NaN or Inf (sample {bad} is the first); the likelihood of a point is defined only "
                         f"for finite data: drop or fix those samples (torch.isfinite(x).all(...))")
    return data_scale


def log_likelihood(
    model: Model,
    x: Tensor,
    *,
    t_end: float | None = None,
    t_max: float | None = None,
    divergence: str = "exact",
    probes: int = 1,
    probe: str = "rademacher",
    seed: int = 0,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    method: str = "dopri5",
    prior: Callable[[Tensor], Tensor] | None = None,
    data_scale: float = 1.0,
) -> Likelihood:
    """log p_{t_end}(x) of the model's probability-flow ODE, solved from t_end to t_max adaptively.

    x is VP-coordinate data (batch first) in the dtype of the network (float64 recommended: the
    tolerances are then meaningful). `data_scale` is dx/du for data u on a unit-spaced lattice (e.g.
    2/K for K levels mapped to [−1, 1] with uniform dequantization): bits/dim = −(log p + d log data_scale)/(d ln 2).
    """
    data_scale = _check_inputs(model, x, divergence, probes, rtol, atol, method, data_scale)
    schedule = model.schedule
    t0 = schedule.t_min if t_end is None else float(t_end)
    t1 = schedule.t_max if t_max is None else float(t_max)
    if not t0 < t1:
        raise DiffsolveError(f"need t_end < t_max (data → noise), got t_end={t0}, t_max={t1}")
    schedule.check_times(as_f64([t0, t1]), "likelihood interval")
    ode = ProbabilityFlowODE(model)
    vs = draw_probes(x.shape, probes, probe, seed, x.dtype, x.device) if divergence == "hutchinson" else []
    points = {t0: make_point(schedule, t0), t1: make_point(schedule, t1)}

    def f(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        key = float(t)  # adaptive control synchronises anyway
        p = points.get(key) or make_point(schedule, key)
        with torch.enable_grad():
            y = state[0].detach().requires_grad_(True)
            dy = ode.drift(y, p)
            div = exact_divergence(dy, y) if divergence == "exact" else hutchinson_divergence(dy, y, vs)
        if model.check_finite:  # the network's NaN/Inf named by its call, before the step control reads it
            model.raise_if_not_finite()
        return dy.detach(), div.detach()

    nfe0 = model.nfe
    model.finite_checks.clear()
    if model.check_finite:
        model.finite_checks.record(x, t0, "input")
    ts = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
    ell0 = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    with torch.no_grad():
        xs, ells = torchdiffeq.odeint(f, (x, ell0), ts, method=method, rtol=rtol, atol=atol,
                                      options={"step_t": ts} if method in ADAPTIVE_METHODS else {})
    model.raise_if_not_finite()
    z, delta = xs[-1], ells[-1]
    prior_logp = (prior or standard_normal_logp)(z)
    logp = prior_logp + delta
    dim = x[0].numel()
    bpd = -(logp + dim * math.log(data_scale)) / (dim * math.log(2.0))
    return Likelihood(logp=logp, prior_logp=prior_logp, delta_logp=delta, z=z, nfe=model.nfe - nfe0,
                      dim=dim, bits_per_dim=bpd)


# ---- the shipped models on held-out data (`diffsolve likelihood`) -------------------------------
def pretrained_likelihood(name: str, *, n: int | None = None, seed: int = 0, divergence: str | None = None,
                          probes: int = 1, probe_seed: int | None = None, rtol: float = 1e-5,
                          atol: float = 1e-5) -> dict[str, float]:
    """PF-ODE NLL of a shipped model or a `diffsolve train` checkpoint path (float64) on held-out data; bits/dim
    for digits-8x8.

    toy-2d: n fresh ring samples (seed 10⁶ + seed), beside the NLL of the true density p_{t_end} on the
    same points; digits-8x8: the 297 held-out test digits, uniformly dequantized (seeded),
    bits/dim = −(log p(x) + 64 log(2/17))/(64 ln 2), beside the 4.09 bits/dim of a uniform law on 17 levels.
    """
    from . import nets

    if name in nets.PRETRAINED:
        model = nets.load_pretrained(name, dtype=torch.float64)
    else:  # a checkpoint file written by `diffsolve train`: its task picks the held-out data
        try:
            model, meta = nets.load_checkpoint(name, dtype=torch.float64)
        except DiffsolveError:  # nets.open_checkpoint's own message names the file, what does not fit and the fix
            raise
        except Exception as e:  # noqa: BLE001 — any file that does not load is the same wrong input
            raise DiffsolveError(f"{name!r} is not a checkpoint written by `diffsolve train` ({type(e).__name__}: "
                                 f"{str(e)[:200]}); give {', '.join(nets.PRETRAINED)} or such a checkpoint") from None
        name = str(meta.get("name"))
    if n is not None:
        most = None if name == "toy-2d" else nets.digits_levels("test").shape[0]
        n = positive_int(n, "n (held-out points)", "omit it for the default (toy-2d: 1000; digits-8x8: all 297)")
        if most is not None and n > most:
            raise DiffsolveError(f"n = {n} but {name} has {most} held-out points; give n <= {most} or omit it")
    check_tolerances(rtol, atol, "e.g. 1e-5")  # checked again by log_likelihood, but before the load
    sched = model.schedule
    if name.startswith("toy-2d"):
        x = nets.toy_2d(1000 if n is None else n, 10**6 + seed).to(torch.float64)
        scale, div = 1.0, divergence or "exact"
    else:
        levels = nets.digits_levels("test")[: n or None].to(torch.float64)
        x = nets.dequantize(levels, torch.Generator().manual_seed(seed))
        scale, div = 2.0 / nets.DIGIT_LEVELS, divergence or "hutchinson"
    res = log_likelihood(model, x, divergence=div, probes=probes, seed=seed if probe_seed is None else probe_seed,
                         rtol=rtol, atol=atol,
                         data_scale=scale)
    b = x.shape[0]
    out = {
        "model": name, "points": b, "dim": res.dim, "divergence": div, "probes": probes, "rtol": rtol,
        "nfe": res.nfe, "nll_nats_per_dim": float(res.nats_per_dim.mean()),
        "nll_nats_per_dim_se": float(res.nats_per_dim.std() / b**0.5),
        "bits_per_dim": float(res.bits_per_dim.mean()),
        "bits_per_dim_se": float(res.bits_per_dim.std() / b**0.5),
        "prior_alpha_t_max": float(sched.alpha(sched.t_max)),
    }
    if name.startswith("toy-2d"):
        a, s = float(sched.alpha(sched.t_min)), float(sched.sigma(sched.t_min))
        true = -nets.toy_2d_logp(x, a, s) / res.dim
        excess = res.nats_per_dim - true  # ≥ 0 in expectation: cross-entropy minus entropy (the KL)
        out["true_nll_nats_per_dim"] = float(true.mean())
        out["excess_nats_per_dim"] = float(excess.mean())
        out["excess_nats_per_dim_se"] = float(excess.std() / b**0.5)
    else:
        out["uniform_bits_per_dim"] = math.log2(nets.DIGIT_LEVELS)
    return out
