"""Noise schedules: Gaussian paths x_t = α_t x_0 + σ_t ε on t ∈ [t_min, t_max], all in float64.

Any path carries α and σ separately: λ_t = log(α_t/σ_t) (half log-SNR), σ̄_t = σ_t/α_t = e^{−λ_t},
f = d log α/dt and g² = dσ²/dt − 2 f σ² (the forward SDE dx = f x dt + g dW has these marginals).
The VP family (α² + σ² = 1) is defined by log α_t and its inverse: σ_t = √(1 − α_t²), β = −2f = g².
The rectified flow (`Flow`) has α = 1 − t, σ = t, optionally with a time shift.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from .errors import ScheduleError

F64 = torch.float64


def as_f64(t: Tensor | float | list[float]) -> Tensor:
    """Any time value(s) as a float64 CPU-or-device tensor (device kept if already a tensor)."""
    if isinstance(t, Tensor):
        return t.to(F64)
    return torch.as_tensor(t, dtype=F64)


def log_alpha_from_lambda(lam: Tensor) -> Tensor:
    """log α = −½ log(1 + e^{−2λ}), exact for every λ (logaddexp, no softplus threshold)."""
    return -0.5 * torch.logaddexp(-2.0 * lam, torch.zeros_like(lam))


def real(owner: str, name: str, value: Any) -> float:
    """A finite real parameter as a float; anything else (NaN, ±Inf, a bool, a string) is a ScheduleError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScheduleError(f"{owner} needs a finite number for {name}, got {value!r}")
    return float(value)


class Schedule(ABC):
    """A Gaussian path x_t = α_t x_0 + σ_t ε on t ∈ [t_min, t_max]; subclasses give log α_t, log σ_t,
    f(t), g²(t) and t(λ). λ_t must decrease strictly in t."""

    t_min: float
    t_max: float

    @abstractmethod
    def log_alpha(self, t: Tensor | float) -> Tensor:
        """log α_t."""

    @abstractmethod
    def log_sigma(self, t: Tensor | float) -> Tensor:
        """log σ_t."""

    @abstractmethod
    def f(self, t: Tensor | float) -> Tensor:
        """f(t) = d log α_t / dt, the drift coefficient of the forward SDE."""

    @abstractmethod
    def g2(self, t: Tensor | float) -> Tensor:
        """g(t)² = dσ_t²/dt − 2 f(t) σ_t², the squared diffusion coefficient of the forward SDE."""

    @abstractmethod
    def t_from_lambda(self, lam: Tensor | float) -> Tensor:
        """t(λ), the inverse of λ_t."""

    def model_time(self, t: Tensor | float) -> Tensor:
        """The time value fed to the network (identity for continuous-time schedules)."""
        return self.times(t)

    def velocity_coefficients(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        """(dα/dτ, dσ/dτ) in the time τ a velocity network is trained in: here τ = t, so
        dα/dt = α f and dσ/dt = (g² + 2 f σ²)/(2σ)."""
        f, g2, a, sig = self.f(t), self.g2(t), self.alpha(t), self.sigma(t)
        return a * f, (g2 + 2.0 * f * sig * sig) / (2.0 * sig)

    def point_columns(self, t: Tensor) -> dict[str, Tensor]:
        """Every quantity a `Point` holds, at the float64 times t (1-D), as float64 columns."""
        la, ls = self.log_alpha(t), self.log_sigma(t)
        lam = self.lam(t)
        d_alpha, d_sigma = self.velocity_coefficients(t)
        return {"log_alpha": la, "alpha": torch.exp(la), "sigma": torch.exp(ls), "lam": lam,
                "sigma_bar": self.sigma_bar(t), "f": self.f(t), "g2": self.g2(t),
                "d_alpha": d_alpha, "d_sigma": d_sigma}

    # ---- identity by value -----------------------------------------------------------------
    @abstractmethod
    def _params(self) -> dict[str, Any]:
        """The constructor arguments that fix this schedule, as JSON values (floats kept exactly)."""

    def to_config(self) -> dict[str, Any]:
        """A JSON-able dict that rebuilds this schedule with `from_config` (its "type" names the class)."""
        return {"type": type(self).__name__, **self._params()}

    def _identity(self) -> tuple[dict[str, Any], str]:
        """(the config, the sha256 prefix of its canonical JSON), computed once: schedules do not change after
        construction, and a DiscreteDDPM config holds its whole table (hashing it per call would cost ~1 ms)."""
        cached = self.__dict__.get("_identity_cache")
        if cached is None:
            config = self.to_config()
            text = json.dumps(config, sort_keys=True, separators=(",", ":"))
            cached = (config, hashlib.sha256(text.encode()).hexdigest()[:16])
            self.__dict__["_identity_cache"] = cached
        return cached

    def fingerprint(self) -> str:
        """A short hash of the config: equal schedules (and only those) share it."""
        return self._identity()[1]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return self is other or (type(self) is type(other) and self._identity()[0] == other._identity()[0])

    def __hash__(self) -> int:
        return hash(self._identity()[1])

    # ---- derived quantities -------------------------------------------------------------
    def alpha(self, t: Tensor | float) -> Tensor:
        """α_t."""
        return torch.exp(self.log_alpha(t))

    def sigma(self, t: Tensor | float) -> Tensor:
        """σ_t."""
        return torch.exp(self.log_sigma(t))

    def lam(self, t: Tensor | float) -> Tensor:
        """λ_t = log α_t − log σ_t."""
        return self.log_alpha(t) - self.log_sigma(t)

    def sigma_bar(self, t: Tensor | float) -> Tensor:
        """σ̄_t = σ_t / α_t = e^{−λ_t}."""
        return torch.exp(-self.lam(t))

    def t_from_sigma_bar(self, sigma_bar: Tensor | float) -> Tensor:
        """t(σ̄), the inverse of σ̄_t."""
        return self.t_from_lambda(-torch.log(as_f64(sigma_bar)))

    # ---- range ---------------------------------------------------------------------------
    @property
    def lambda_min(self) -> float:
        """λ at t_max (the noisiest end)."""
        return float(self.lam(self.t_max))

    @property
    def lambda_max(self) -> float:
        """λ at t_min (the cleanest end)."""
        return float(self.lam(self.t_min))

    def check_ends(self) -> None:
        """Raise unless α, σ, λ, 1/α and 1/σ are finite and positive at t_min and t_max, with λ(t_min) > λ(t_max)
        (called by every constructor: parameters that overflow or underflow float64 are refused up front)."""
        ends = torch.tensor([self.t_min, self.t_max], dtype=F64)
        with torch.no_grad():
            a, sig, lam = self.alpha(ends), self.sigma(ends), self.lam(ends)
        vals = torch.cat([a, sig, lam, 1.0 / a, 1.0 / sig])
        if not (bool(torch.isfinite(vals).all()) and bool((a > 0).all()) and bool((sig > 0).all())
                and float(lam[0]) > float(lam[1])):
            raise ScheduleError(
                f"{self!r} is outside its valid parameter range: at t_min, t_max it gives α = "
                f"({float(a[0]):.4g}, {float(a[1]):.4g}), σ = ({float(sig[0]):.4g}, {float(sig[1]):.4g}), "
                f"λ = ({float(lam[0]):.4g}, {float(lam[1]):.4g}); α and σ must be positive and finite in float64 "
                f"with λ decreasing; use parameters near the defaults of {type(self).__name__}()"
            )

    def times(self, t: Tensor | float | list[float]) -> Tensor:
        """t as float64, checked to lie in [t_min, t_max] when it lives on the host (a device tensor is not
        read here: that would synchronise a solver's loop; solvers check their grids before the loop)."""
        t = as_f64(t)
        if t.device.type == "cpu" and type(t) is Tensor and t.numel():
            self.check_times(t)
        return t

    def check_times(self, t: Tensor, what: str = "time") -> None:
        """Raise if any t lies outside [t_min, t_max] (with a relative slack of 1e-12), or is NaN."""
        t = as_f64(t).detach()
        slack = 1e-12 * max(1.0, abs(self.t_max))
        if t.numel() == 0:
            return
        if t.numel() == 1:
            lo = hi = float(t)
        else:
            lo, hi = float(t.min()), float(t.max())
        if not (lo >= self.t_min - slack and hi <= self.t_max + slack):
            raise ScheduleError(
                f"{what} range [{lo:.17g}, {hi:.17g}] lies outside the schedule {self!r}, "
                f"whose range is [{self.t_min:.17g}, {self.t_max:.17g}]; "
                f"choose t_start/t_end inside it or build the schedule with a wider range"
            )

    def snap_times(self, t: Tensor, rel: float = 1e-6) -> Tensor:
        """t with the values that overshoot [t_min, t_max] by at most `rel` relative (the rounding of a float32
        time, e.g. torch.linspace(0.999, 0.001, 11)) set to that end; other values unchanged (a copy)."""
        t = as_f64(t).detach().clone()
        lo_tol, hi_tol = rel * max(abs(self.t_min), 1e-300), rel * max(abs(self.t_max), 1e-300)
        t[(t < self.t_min) & (t >= self.t_min - lo_tol)] = self.t_min
        t[(t > self.t_max) & (t <= self.t_max + hi_tol)] = self.t_max
        return t




class VPSchedule(Schedule):
    """A VP schedule (α² + σ² = 1) given by log α_t, β(t) = −2 d log α_t/dt and t(log α)."""

    @abstractmethod
    def beta(self, t: Tensor | float) -> Tensor:
        """β(t) = −2 d log α_t / dt."""

    @abstractmethod
    def t_from_log_alpha(self, log_alpha: Tensor | float) -> Tensor:
        """The inverse of log α_t."""

    def log_sigma(self, t: Tensor | float) -> Tensor:
        """log σ_t = ½ log(1 − α_t²)."""
        return 0.5 * torch.log(-torch.expm1(2.0 * self.log_alpha(t)))

    def sigma(self, t: Tensor | float) -> Tensor:
        """σ_t = √(1 − α_t²)."""
        return torch.sqrt(-torch.expm1(2.0 * self.log_alpha(t)))

    def lam(self, t: Tensor | float) -> Tensor:
        """λ_t = log α_t − ½ log(1 − α_t²)."""
        la = self.log_alpha(t)
        return la - 0.5 * torch.log(-torch.expm1(2.0 * la))

    def f(self, t: Tensor | float) -> Tensor:
        """f = −β/2."""
        return -0.5 * self.beta(t)

    def g2(self, t: Tensor | float) -> Tensor:
        """g² = β (α² + σ² = 1)."""
        return self.beta(t)

    def t_from_lambda(self, lam: Tensor | float) -> Tensor:
        """t(λ) through log α = −½ log(1 + e^{−2λ})."""
        return self.t_from_log_alpha(log_alpha_from_lambda(as_f64(lam)))

    def point_columns(self, t: Tensor) -> dict[str, Tensor]:
        la = self.log_alpha(t)
        one_minus_a2 = -torch.expm1(2.0 * la)
        lam = self.lam(t) if type(self).lam is not VPSchedule.lam else la - 0.5 * torch.log(one_minus_a2)
        sigma_bar = self.sigma_bar(t) if type(self).sigma_bar is not Schedule.sigma_bar else torch.exp(-lam)
        alpha, sigma, beta = torch.exp(la), torch.sqrt(one_minus_a2), self.beta(t)
        f = -0.5 * beta
        return {"log_alpha": la, "alpha": alpha, "sigma": sigma, "lam": lam, "sigma_bar": sigma_bar,
                "f": f, "g2": beta, "d_alpha": alpha * f, "d_sigma": (beta + 2.0 * f * sigma * sigma) / (2.0 * sigma)}


class VPLinear(VPSchedule):
    """Continuous linear VP: β(t) = β_min + t(β_max − β_min), log α_t = −¼t²(β_max−β_min) − ½tβ_min."""

    def __init__(
        self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3, t_max: float = 1.0
    ):
        beta_min, beta_max = real("VPLinear", "beta_min", beta_min), real("VPLinear", "beta_max", beta_max)
        t_min, t_max = real("VPLinear", "t_min", t_min), real("VPLinear", "t_max", t_max)
        if not (beta_min > 0 and beta_max > beta_min):
            raise ScheduleError(
                f"VPLinear needs 0 < beta_min < beta_max, got beta_min={beta_min}, "
                f"beta_max={beta_max}; the usual values are 0.1 and 20"
            )
        if not (0 < t_min < t_max):
            raise ScheduleError(f"VPLinear needs 0 < t_min < t_max, got {t_min}, {t_max}")
        self.beta_min, self.beta_max, self.t_min, self.t_max = beta_min, beta_max, t_min, t_max
        self.check_ends()

    def _params(self) -> dict[str, Any]:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "t_min": self.t_min, "t_max": self.t_max}

    def __repr__(self) -> str:
        return f"VPLinear(beta_min={self.beta_min}, beta_max={self.beta_max}, t_min={self.t_min}, t_max={self.t_max})"

    def log_alpha(self, t: Tensor | float) -> Tensor:
        t = self.times(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def beta(self, t: Tensor | float) -> Tensor:
        return self.beta_min + self.times(t) * (self.beta_max - self.beta_min)

    def t_from_log_alpha(self, log_alpha: Tensor | float) -> Tensor:
        # ¼Δβ t² + ½β₀ t − L = 0 with L = −log α; the root in its cancellation-free form.
        big_l = -as_f64(log_alpha)
        b0, db = self.beta_min, self.beta_max - self.beta_min
        return 4.0 * big_l / (b0 + torch.sqrt(b0 * b0 + 4.0 * db * big_l))


class VPCosine(VPSchedule):
    """Cosine VP (Nichol & Dhariwal): α_t = cos(π/2·(t+s)/(1+s)) / cos(π/2·s/(1+s)), clipped at t_max."""

    def __init__(self, s: float = 0.008, t_min: float = 1e-3, t_max: float = 0.9946):
        s, t_min, t_max = (real("VPCosine", k, v) for k, v in (("s", s), ("t_min", t_min), ("t_max", t_max)))
        if not 0.0 <= s <= 1.0:
            raise ScheduleError(f"VPCosine needs an offset 0 <= s <= 1, got s={s}; the usual value is 0.008")
        if not (0 < t_min < t_max < 1.0):
            raise ScheduleError(
                f"VPCosine needs 0 < t_min < t_max < 1 (α reaches 0 at t = 1), got {t_min}, {t_max}; "
                f"the usual clip is t_max = 0.9946"
            )
        self.s, self.t_min, self.t_max = s, t_min, t_max
        self._log_cos0 = math.log(math.cos(math.pi / 2 * s / (1 + s)))
        self.check_ends()

    def _params(self) -> dict[str, Any]:
        return {"s": self.s, "t_min": self.t_min, "t_max": self.t_max}

    def __repr__(self) -> str:
        return f"VPCosine(s={self.s}, t_min={self.t_min}, t_max={self.t_max})"

    def log_alpha(self, t: Tensor | float) -> Tensor:
        theta = math.pi / 2 * (self.times(t) + self.s) / (1 + self.s)
        return torch.log(torch.cos(theta)) - self._log_cos0

    def beta(self, t: Tensor | float) -> Tensor:
        theta = math.pi / 2 * (self.times(t) + self.s) / (1 + self.s)
        return math.pi / (1 + self.s) * torch.tan(theta)

    def t_from_log_alpha(self, log_alpha: Tensor | float) -> Tensor:
        theta = torch.arccos(torch.exp(as_f64(log_alpha) + self._log_cos0))
        return theta * 2 * (1 + self.s) / math.pi - self.s


class DiscreteDDPM(VPSchedule):
    """A discrete DDPM table ᾱ_n (n = 0…N−1) embedded at t_n = (n+1)/N, log α piecewise linear in t.

    The network of an integer-step model is evaluated at the continuous input N·t − 1, so it is
    called at its own integer steps on the grid's knots and in between them elsewhere.
    """

    def __init__(
        self,
        betas: Tensor | list[float] | None = None,
        alphas_cumprod: Tensor | list[float] | None = None,
        num_train_steps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        log_alphas_cumprod: Tensor | list[float] | None = None,
    ):
        given = [k for k, v in (("betas", betas), ("alphas_cumprod", alphas_cumprod),
                                ("log_alphas_cumprod", log_alphas_cumprod)) if v is not None]
        if len(given) > 1:
            raise ScheduleError(
                f"DiscreteDDPM takes one of betas, alphas_cumprod or log_alphas_cumprod, got {', '.join(given)}; "
                f"pass one of them"
            )
        if log_alphas_cumprod is not None:
            log_acp = as_f64(log_alphas_cumprod).cpu()
            if log_acp.ndim != 1 or not bool((log_acp < 0).all()) or not bool((log_acp[1:] < log_acp[:-1]).all()):
                raise ScheduleError(
                    "DiscreteDDPM log_alphas_cumprod must be a 1-D, strictly decreasing table of negative numbers"
                )
        elif alphas_cumprod is None:
            if betas is None:
                betas = torch.linspace(beta_start, beta_end, num_train_steps, dtype=F64)
            betas = as_f64(betas).cpu()
            if betas.ndim != 1 or not bool(((betas > 0) & (betas < 1)).all()):
                raise ScheduleError(
                    "DiscreteDDPM betas must be a 1-D table with every value in (0, 1); "
                    f"got shape {tuple(betas.shape)}, min {float(betas.min()):.3g}, max {float(betas.max()):.3g}"
                )
            log_acp = torch.cumsum(torch.log1p(-betas), 0)
        else:
            acp = as_f64(alphas_cumprod).cpu()
            if acp.ndim != 1 or not bool(((acp > 0) & (acp < 1)).all()) or not bool((acp[1:] < acp[:-1]).all()):
                raise ScheduleError(
                    "DiscreteDDPM alphas_cumprod must be a 1-D, strictly decreasing table in (0, 1); "
                    "check the table (a final value of exactly 0, as in zero-terminal-SNR tables, "
                    "must be clipped to a small positive number)"
                )
            log_acp = torch.log(acp)
        self.num_train_steps = n = log_acp.numel()
        if n < 2:
            raise ScheduleError(f"DiscreteDDPM needs at least 2 training steps, got {n}")
        self.log_alpha_knots = 0.5 * log_acp  # log α at t_n
        self.t_knots = torch.arange(1, n + 1, dtype=F64) / n
        self.t_min, self.t_max = float(self.t_knots[0]), float(self.t_knots[-1])
        self._slopes = torch.diff(self.log_alpha_knots) / torch.diff(self.t_knots)
        self.check_ends()

    def _params(self) -> dict[str, Any]:
        # log ᾱ_n itself (2·log α at the knots): from_config rebuilds the very same knots, bit for bit
        return {"log_alphas_cumprod": (2.0 * self.log_alpha_knots).tolist()}

    def __repr__(self) -> str:
        return f"DiscreteDDPM(num_train_steps={self.num_train_steps}, table={self.fingerprint()})"

    @property
    def alphas_cumprod(self) -> Tensor:
        """ᾱ_n = α²(t_n), the DDPM table."""
        return torch.exp(2.0 * self.log_alpha_knots)

    def _segment(self, t: Tensor) -> Tensor:
        idx = torch.searchsorted(self.t_knots.to(t.device), t, right=True) - 1
        return idx.clamp(0, self.num_train_steps - 2)

    def log_alpha(self, t: Tensor | float) -> Tensor:
        t = self.times(t)
        i = self._segment(t)
        knots, la, slopes = (v.to(t.device) for v in (self.t_knots, self.log_alpha_knots, self._slopes))
        return la[i] + slopes[i] * (t - knots[i])

    def beta(self, t: Tensor | float) -> Tensor:
        t = self.times(t)
        return -2.0 * self._slopes.to(t.device)[self._segment(t)]

    def t_from_log_alpha(self, log_alpha: Tensor | float) -> Tensor:
        la = as_f64(log_alpha)
        knots, la_k, slopes = (v.to(la.device) for v in (self.t_knots, self.log_alpha_knots, self._slopes))
        # log α decreases along the knots: search in −log α, which increases.
        i = (torch.searchsorted(-la_k, -la, right=True) - 1).clamp(0, self.num_train_steps - 2)
        return knots[i] + (la - la_k[i]) / slopes[i]

    def model_time(self, t: Tensor | float) -> Tensor:
        """Network input N·t − 1: the integer training step n at the knot t_n."""
        return self.num_train_steps * self.times(t) - 1.0

    def t_from_step(self, n: Tensor | list[int] | int) -> Tensor:
        """t_n = (n+1)/N for integer training steps n (diffusers' `timesteps`)."""
        return (as_f64(n) + 1.0) / self.num_train_steps


class EDM(VPSchedule):
    """VE / EDM noise levels used as time directly: t = σ̄ ∈ [σ̄_min, σ̄_max], α = 1/√(1+σ̄²)."""

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0):
        sigma_min, sigma_max = real("EDM", "sigma_min", sigma_min), real("EDM", "sigma_max", sigma_max)
        if not (0 < sigma_min < sigma_max):
            raise ScheduleError(f"EDM needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.t_min, self.t_max = sigma_min, sigma_max
        self.check_ends()

    def _params(self) -> dict[str, Any]:
        return {"sigma_min": self.t_min, "sigma_max": self.t_max}

    def __repr__(self) -> str:
        return f"EDM(sigma_min={self.t_min}, sigma_max={self.t_max})"

    def log_alpha(self, t: Tensor | float) -> Tensor:
        return -0.5 * torch.log1p(self.times(t) ** 2)

    def beta(self, t: Tensor | float) -> Tensor:
        t = self.times(t)
        return 2.0 * t / (1.0 + t * t)

    def t_from_log_alpha(self, log_alpha: Tensor | float) -> Tensor:
        return torch.sqrt(torch.expm1(-2.0 * as_f64(log_alpha)))

    def lam(self, t: Tensor | float) -> Tensor:
        return -torch.log(self.times(t))

    def sigma_bar(self, t: Tensor | float) -> Tensor:
        return self.times(t).clone()

    def t_from_lambda(self, lam: Tensor | float) -> Tensor:
        return torch.exp(-as_f64(lam))

    def t_from_sigma_bar(self, sigma_bar: Tensor | float) -> Tensor:
        return as_f64(sigma_bar).clone()


class Flow(Schedule):
    """Rectified flow (flow matching): α_t = 1 − σ_t, σ_t = k t/(1 + (k − 1) t), t ∈ [t_min, t_max].

    k = `shift` is the SD3-style time shift (k = 1: σ = t; k > 1 spends more of a uniform t-grid at high
    noise). Closed forms: α = (1 − t)/(1 + (k−1)t), σ̄ = k t/(1 − t), λ = log(1 − t) − log k − log t,
    t(λ) = 1/(1 + k e^λ), f = −1/(1 − t) − (k−1)/(1 + (k−1)t), g² = 2σ̄ dσ/dt = 2k² t/((1 − t)(1 + (k−1)t)²).
    The network's time is the flow time σ_t ∈ (0, 1) (what rectified-flow networks are trained on; diffusers
    feeds 1000 σ), and its velocity is d/dσ of x = (1 − σ) x0 + σ ε: v = ε − x0.
    Defaults t ∈ [1e-3, 1 − 1e-3]: t = 1 is pure noise (α = 0, λ = −∞) and t = 0 pure data (σ = 0); 1e-3 is
    diffusers' last σ (1/num_train_timesteps) and leaves α(t_max) = 1e-3, a start that differs from N(0, σ²)
    by less than VPLinear's α(1) = 6.6e-3; σ̄ then spans [1.0e-3, 999] (λ ∈ [−6.9, 6.9]).
    """

    def __init__(self, t_min: float = 1e-3, t_max: float = 1.0 - 1e-3, shift: float = 1.0):
        t_min, t_max, shift = (real("Flow", k, v) for k, v in (("t_min", t_min), ("t_max", t_max), ("shift", shift)))
        if not (0 < t_min < t_max < 1.0):
            raise ScheduleError(
                f"Flow needs 0 < t_min < t_max < 1 (α = 0 at t = 1, σ = 0 at t = 0), got {t_min}, {t_max}; "
                f"the defaults are 1e-3 and 1 - 1e-3"
            )
        if not shift > 0:
            raise ScheduleError(f"Flow needs a time shift > 0, got shift={shift}; 1 means no shift (SD3 uses 3)")
        self.t_min, self.t_max, self.shift = t_min, t_max, shift
        self.check_ends()

    def _params(self) -> dict[str, Any]:
        return {"t_min": self.t_min, "t_max": self.t_max, "shift": self.shift}

    def __repr__(self) -> str:
        return f"Flow(t_min={self.t_min}, t_max={self.t_max}, shift={self.shift})"

    def _denominator(self, t: Tensor) -> Tensor:
        """1 + (k − 1) t."""
        return 1.0 + (self.shift - 1.0) * t

    def alpha(self, t: Tensor | float) -> Tensor:
        t = self.times(t)
        return (1.0 - t) / self._denominator(t)

    def sigma(self, t: Tensor | float) -> Tensor:
        t = self.times(t)
        return self.shift * t / self._denominator(t)

    def log_alpha(self, t: Tensor | float) -> Tensor:
        t = self.times(t)
        return torch.log1p(-t) - torch.log1p((self.shift - 1.0) * t)

    def log_sigma(self, t: Tensor | float) -> Tensor:
        t = self.times(t)
        return math.log(self.shift) + torch.log(t) - torch.log1p((self.shift - 1.0) * t)

    def lam(self, t: Tensor | float) -> Tensor:
        t = self.times(t)
        return torch.log1p(-t) - torch.log(t) - math.log(self.shift)

    def sigma_bar(self, t: Tensor | float) -> Tensor:
        t = self.times(t)
        return self.shift * t / (1.0 - t)

    def f(self, t: Tensor | float) -> Tensor:
        t = self.times(t)
        return -1.0 / (1.0 - t) - (self.shift - 1.0) / self._denominator(t)

    def g2(self, t: Tensor | float) -> Tensor:
        t = self.times(t)
        return 2.0 * self.shift**2 * t / ((1.0 - t) * self._denominator(t) ** 2)

    def t_from_lambda(self, lam: Tensor | float) -> Tensor:
        return torch.sigmoid(-as_f64(lam) - math.log(self.shift))

    def t_from_sigma_bar(self, sigma_bar: Tensor | float) -> Tensor:
        sb = as_f64(sigma_bar)
        return sb / (self.shift + sb)

    def model_time(self, t: Tensor | float) -> Tensor:
        """The flow time σ_t."""
        return self.sigma(t)

    def velocity_coefficients(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        """(dα/dσ, dσ/dσ) = (−1, 1): the velocity is taken in the flow time σ, whatever the shift."""
        one = torch.ones_like(self.times(t))
        return -one, one

    def point_columns(self, t: Tensor) -> dict[str, Tensor]:
        cols = super().point_columns(t)
        cols["alpha"], cols["sigma"] = self.alpha(t), self.sigma(t)  # exact, not exp(log)
        return cols


def from_config(config: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from `Schedule.to_config()` ({"type": class name, **parameters}, the one format written);
    checkpoints of earlier versions wrote {"kind": registered name, …}, which is still read. An unknown type or
    parameter is a ScheduleError."""
    if isinstance(config, dict) and "type" not in config and config.get("kind") in SCHEDULES:
        config = {"type": SCHEDULES[config["kind"]].__name__, **{k: v for k, v in config.items() if k != "kind"}}
    if not isinstance(config, dict) or "type" not in config:
        raise ScheduleError(f"a schedule config is a dict with a 'type' key (Schedule.to_config()), got {config!r}")
    kinds = {cls.__name__: cls for cls in SCHEDULES.values()}
    name = config["type"]
    if name not in kinds:
        raise ScheduleError(f"unknown schedule type {name!r} in a config; valid ones are {', '.join(sorted(kinds))}")
    params = {k: v for k, v in config.items() if k != "type"}
    try:
        return kinds[name](**params)
    except TypeError as e:
        raise ScheduleError(f"schedule config {config!r} does not fit {name}: {e}") from None


SCHEDULES: dict[str, type[Schedule]] = {
    "linear": VPLinear,
    "cosine": VPCosine,
    "discrete": DiscreteDDPM,
    "edm": EDM,
    "flow": Flow,
}
