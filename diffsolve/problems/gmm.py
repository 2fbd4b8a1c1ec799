"""Gaussian-mixture data with exact denoiser, exact marginal densities, samples and reference flow.

Data p_0 = Σ_k w_k N(μ_k, diag(s_k²)). In x̄ = x/α coordinates every marginal is a mixture
p_σ̄(x̄) = Σ_k w_k N(μ_k, diag(s_k² + σ̄²)), whatever the Gaussian path (VP, VE, rectified flow); hence
  ε(x, t) = −σ̄ ∇_x̄ log p_σ̄(x̄) = σ̄ Σ_k r_k(x̄) (x̄ − μ_k)/(s_k² + σ̄²),
  x̂0 = x̄ − σ̄ ε = Σ_k r_k(x̄) (μ_k + s_k²/(s_k² + σ̄²)(x̄ − μ_k)),
with r_k the posterior component weights (log-sum-exp), and the sampling ODE dx̄/dσ̄ = ε.
The exact velocity of a path (`Flow`: v = ε − x̂0) is v = α' x̂0 + σ' ε, ' the derivative in the network's time.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable

import numpy as np
import torch
import torchdiffeq
from torch import Tensor

from ..errors import DiffsolveError
from ..models import EpsModel, FlowModel, Model
from ..points import Point, make_point
from ..schedules import Schedule, as_f64
from .base import F64, Problem, generator, time_range

LOG_2PI = math.log(2.0 * math.pi)
_STREAM_X_T = 0


class GaussianMixture(Problem):
    """K-component diagonal Gaussian mixture in d dimensions: weights (K,), means (K, d), stds (K, d)."""

    has_exact_samples = True

    def __init__(self, weights: Tensor, means: Tensor, stds: Tensor, name: str = "gmm", description: str = ""):
        w, mu, s = as_f64(weights).reshape(-1), as_f64(means), as_f64(stds)
        if mu.ndim != 2 or s.shape != mu.shape or w.shape != (mu.shape[0],):
            raise DiffsolveError(
                f"GaussianMixture needs weights (K,), means (K, d) and stds (K, d); got shapes "
                f"{tuple(w.shape)}, {tuple(mu.shape)}, {tuple(s.shape)}"
            )
        if not bool((w > 0).all()) or not bool((s > 0).all()):
            raise DiffsolveError("GaussianMixture weights and stds must all be positive; check the inputs")
        self.weights = w / w.sum()
        self.means, self.stds = mu, s
        self.log_weights = torch.log(self.weights)
        self.var = s * s
        self.name, self.dim = name, mu.shape[1]
        self.description = description or f"{mu.shape[0]}-component Gaussian mixture in {self.dim} dimensions"

    @classmethod
    def random(
        cls, dim: int, components: int, seed: int = 0, mean_scale: float = 1.0,
        std_range: tuple[float, float] = (0.05, 0.3), name: str = "gmm", description: str = "",
    ) -> GaussianMixture:
        """A seeded mixture: means N(0, mean_scale²), stds log-uniform in std_range, weights ∝ e^{N(0, 0.8²)}."""
        g = generator(seed, 7)
        means = mean_scale * torch.randn(components, dim, generator=g, dtype=F64)
        lo, hi = math.log(std_range[0]), math.log(std_range[1])
        stds = torch.exp(lo + (hi - lo) * torch.rand(components, dim, generator=g, dtype=F64))
        weights = torch.softmax(0.8 * torch.randn(components, generator=g, dtype=F64), 0)
        return cls(weights, means, stds, name=name, description=description)

    def fingerprint(self) -> str:
        """A hash of the weights, means and stds, each rounded to 32 significant bits (relative 2⁻³² ≈ 2.3e-10).

        The rounding makes the key a property of the problem, not of the CPU: the same seeded mixture built on
        another machine (whose vectorised exp or softmax differ in the last bit) keeps its stored cells and
        cached references, while parameters that differ by more than round-off are another problem.
        """
        h = hashlib.sha256(repr(tuple(self.means.shape)).encode())
        for t in (self.weights, self.means, self.stds):
            mantissa, exponent = np.frexp(t.detach().cpu().to(F64).contiguous().numpy())
            h.update(np.rint(np.ldexp(mantissa, 32)).astype(np.int64).tobytes())  # exact: a power-of-2 scaling
            h.update(exponent.astype(np.int32).tobytes())
        return f"GaussianMixture:{h.hexdigest()[:32]}"

    @property
    def components(self) -> int:
        return self.means.shape[0]

    # ---- densities in x̄ coordinates ---------------------------------------------------------
    def _component_logits(self, xbar: Tensor, sigma_bar: Tensor | float) -> tuple[Tensor, Tensor]:
        """(log w_k + log N(x̄; μ_k, s_k² + σ̄²) of shape (B, K), and z = (x̄ − μ_k)/(s_k² + σ̄²) of shape (B, K, d)).

        For one σ̄ per row; `_shared_level_eps` is the fast form when all rows share σ̄.
        """
        sb = self._level(sigma_bar, xbar.device)
        v = self.var.to(xbar.device) + (sb * sb)[..., None]  # (B|1, K, d)
        diff = xbar[:, None, :] - self.means.to(xbar.device)
        z = diff / v
        logits = self.log_weights.to(xbar.device) - 0.5 * ((diff * z).sum(-1) + torch.log(v).sum(-1)
                                                             + self.dim * LOG_2PI)
        return logits, z

    def _shared_level_eps(self, xbar: Tensor, sb: Tensor) -> Tensor:
        """ε for a single σ̄ by matrix products (iv_k = 1/(s_k² + σ̄²), (K, d)):
        Σ_d (x̄−μ_k)² iv_k = x̄²·iv_k − 2 x̄·(μ_k iv_k) + μ_k²·iv_k, and Σ_k r_k z_k = x̄ ⊙ (r iv) − r (μ iv).

        The right operands are contiguous (d, K) copies, not transposed views: with a transposed operand MKL took
        another kernel for a single row than for a batch (on an AVX-512 CPU a sample alone differed from the same
        sample in a batch in the last bit), and a sample must not depend on its batch.
        """
        iv = 1.0 / (self.var.to(xbar.device) + sb * sb)
        mu_iv = self.means.to(xbar.device) * iv
        iv_t, mu_iv_t = iv.T.contiguous(), mu_iv.T.contiguous()
        quad = (xbar * xbar) @ iv_t - 2.0 * (xbar @ mu_iv_t) + (self.means.to(xbar.device) * mu_iv).sum(-1)
        logits = self.log_weights.to(xbar.device) - 0.5 * (quad - torch.log(iv).sum(-1))
        r = torch.softmax(logits, -1)
        return sb * (xbar * (r @ iv) - r @ mu_iv)

    def log_prob_bar(self, xbar: Tensor, sigma_bar: Tensor | float) -> Tensor:
        """log p_σ̄(x̄) = log Σ_k w_k N(x̄; μ_k, diag(s_k² + σ̄²)), float64, shape (B,)."""
        logits, _ = self._component_logits(as_f64(xbar), sigma_bar)
        return torch.logsumexp(logits, -1)

    def log_prob_data(self, x0: Tensor) -> Tensor:
        """log p_0(x0) of the data, shape (B,)."""
        return self.log_prob_bar(x0, 0.0)

    def log_prob(self, x: Tensor, t: Tensor | float, schedule: Schedule) -> Tensor:
        """log p_t(x) of the marginal in VP coordinates: log p_σ̄(x/α) − d log α (t scalar or (B,))."""
        t = as_f64(t)
        la = schedule.log_alpha(t).to(x.device)
        xbar = as_f64(x) * torch.exp(-la).reshape(-1, 1)
        return self.log_prob_bar(xbar, schedule.sigma_bar(t)) - self.dim * la

    def component_of(self, x: Tensor, schedule: Schedule, t: float) -> Tensor:
        """argmax_k of the posterior r_k(x̄) ∝ w_k N(x̄; μ_k, s_k² + σ̄_t²) at x̄ = x/α_t: each sample's component."""
        logits, _ = self._component_logits(*self._bar(as_f64(x).reshape(x.shape[0], -1), float(t), schedule))
        return torch.argmax(logits, -1)

    def eps_bar(self, xbar: Tensor, sigma_bar: Tensor | float) -> Tensor:
        """ε = σ̄ Σ_k r_k (x̄ − μ_k)/(s_k² + σ̄²), with σ̄ a scalar or one value per row."""
        sb = self._level(sigma_bar, xbar.device)
        if sb.numel() == 1:
            return self._shared_level_eps(xbar, sb.reshape(()))
        logits, z = self._component_logits(xbar, sigma_bar)
        r = torch.softmax(logits, -1)[..., None]  # (B, K, 1)
        return self._level(sigma_bar, xbar.device) * (r * z).sum(1)

    def x0_bar(self, xbar: Tensor, sigma_bar: Tensor | float) -> Tensor:
        """x̂0 = E[x0 | x̄] = x̄ − σ̄ ε = Σ_k r_k (μ_k + s_k²/(s_k² + σ̄²)(x̄ − μ_k))."""
        return xbar - self._level(sigma_bar, xbar.device) * self.eps_bar(xbar, sigma_bar)

    # ---- the same in VP coordinates for any schedule -------------------------------------------
    def _bar(self, x: Tensor, t: Tensor | float, schedule: Schedule) -> tuple[Tensor, Tensor]:
        t = as_f64(t).to(x.device)
        alpha = schedule.alpha(t).reshape(-1, 1) if t.ndim else schedule.alpha(t)
        return as_f64(x) / alpha, schedule.sigma_bar(t)

    def eps(self, x: Tensor, t: Tensor | float, schedule: Schedule) -> Tensor:
        """Exact ε(x, t) = −σ_t ∇log p_t(x) for VP-coordinate x (float64)."""
        return self.eps_bar(*self._bar(x, t, schedule))

    def x0(self, x: Tensor, t: Tensor | float, schedule: Schedule) -> Tensor:
        """Exact x̂0(x, t) = E[x0 | x_t = x] (float64)."""
        return self.x0_bar(*self._bar(x, t, schedule))

    def velocity(self, x: Tensor, t: Tensor | float, schedule: Schedule) -> Tensor:
        """Exact velocity v = α' x̂0 + σ' ε (the schedule's `velocity_coefficients`; Flow: v = ε − x̂0), float64."""
        d_alpha, d_sigma = (float(c) for c in schedule.velocity_coefficients(float(t)))
        return d_alpha * self.x0(x, t, schedule) + d_sigma * self.eps(x, t, schedule)

    def model(self, schedule: Schedule | None = None, dtype: torch.dtype = F64, prediction: str = "eps") -> Model:
        """The exact model, fed the continuous float64 t (whatever the model_time): an EpsModel, or with
        prediction="velocity" a FlowModel of the exact velocity (the same ODE up to round-off).

        The mixture is evaluated in `dtype` — float16/bfloat16 in float32, where x̄² / (s² + σ̄²) stays finite
        (it reaches 1e7 at the noisy end, past float16's 65504) — and the output cast to the state's dtype;
        its parameters are copied once to each device the net is called on (no copies inside a solver's loop).
        """
        schedule = schedule or self.default_schedule()
        if prediction not in ("eps", "velocity"):
            raise DiffsolveError(f"a GaussianMixture model predicts 'eps' or 'velocity', got {prediction!r}")
        work = dtype if dtype in (F64, torch.float32) else torch.float32
        copies: dict[torch.device, GaussianMixture] = {}

        def net(x: Tensor, t: Tensor) -> Tensor:
            mix = copies.get(x.device)
            if mix is None:
                mix = copies[x.device] = self._cast(work, x.device)
            alpha = schedule.alpha(t).to(work).reshape(-1, 1)
            sb = schedule.sigma_bar(t).to(work)
            xbar = x.to(work) / alpha
            eps = mix.eps_bar(xbar, sb)
            if prediction == "eps":
                return eps.to(x.dtype)
            d_alpha, d_sigma = (c.to(work).reshape(-1, 1) for c in schedule.velocity_coefficients(t))
            return (d_alpha * (xbar - sb * eps) + d_sigma * eps).to(x.dtype)

        # Model calls always share one t across the batch: pass it once, as a (1,) float64 tensor,
        # so the mixture's variances are computed once per call rather than once per row.
        net.data_shape = (self.dim,)  # type: ignore[attr-defined]  # states are (batch, dim): checked before a call
        cls = EpsModel if prediction == "eps" else FlowModel
        return cls(net, schedule, time_input=lambda t: t[:1])

    def _cast(self, dtype: torch.dtype, device: torch.device) -> GaussianMixture:
        """This mixture with its parameters in `dtype` on `device` (itself when nothing changes)."""
        if dtype == self.means.dtype and device == self.means.device:
            return self
        mix = copy.copy(self)
        for attr in ("weights", "log_weights", "means", "stds", "var"):
            setattr(mix, attr, getattr(self, attr).to(device=device, dtype=dtype))
        return mix

    def _level(self, sigma_bar: Tensor | float, device: torch.device) -> Tensor:
        """σ̄ as a tensor in the mixture's dtype: a scalar, or a (B, 1) column for one value per row."""
        sb = torch.as_tensor(sigma_bar, dtype=self.means.dtype, device=device)
        return sb.reshape(-1, 1) if sb.ndim else sb

    # ---- samples ------------------------------------------------------------------------------
    def sample_data(self, n: int, g: torch.Generator) -> Tensor:
        """n exact samples of the data p_0 (float64)."""
        k = torch.multinomial(self.weights.cpu().to(F64), n, replacement=True, generator=g)
        z = torch.randn(n, self.dim, generator=g, dtype=F64)
        return self.means.cpu().to(F64)[k] + self.stds.cpu().to(F64)[k] * z

    def samples(
        self, n: int, seed: int, schedule: Schedule | None = None, t: float | None = None, stream: int = 1
    ) -> Tensor:
        """n exact samples of p_t: x = α_t x0 + σ_t z (t = None gives the data itself)."""
        g = generator(seed, stream)
        x0 = self.sample_data(n, g)
        if t is None:
            return x0
        schedule = schedule or self.default_schedule()
        t = float(t)
        alpha, sigma = float(schedule.alpha(t)), float(schedule.sigma(t))
        return alpha * x0 + sigma * torch.randn(n, self.dim, generator=g, dtype=F64)

    def x_T(
        self, n: int, seed: int, schedule: Schedule | None = None, t_start: float | None = None,
        dtype: torch.dtype = F64,
    ) -> Tensor:
        """n exact samples of p_{t_start} (not N(0, I)), so the exact flow lands exactly on p_{t_end}."""
        schedule = schedule or self.default_schedule()
        t0, _ = time_range(schedule, t_start, None)
        return self.samples(n, seed, schedule, t0, stream=_STREAM_X_T).to(dtype)

    # ---- reference ------------------------------------------------------------------------------
    def exact_flow(
        self, x_T: Tensor, schedule: Schedule | None = None, t_start: float | None = None,
        t_end: float | None = None,
    ) -> Tensor:
        """The closed-form PF-ODE solution of a single Gaussian N(μ, diag(s²)), VP coords, float64.

        With one component ε = σ̄ (x̄ − μ)/(s² + σ̄²), so dx̄/dσ̄ = ε is linear and solved by
        x̄(σ̄) = μ + (x̄_T − μ) √(s² + σ̄²)/√(s² + σ̄_T²), per coordinate; x = α x̄.
        """
        if self.components != 1:
            raise DiffsolveError(
                f"exact_flow is the closed form of a single Gaussian; this mixture has {self.components} "
                f"components: use reference() (a float64 dopri8 solve) instead"
            )
        schedule = schedule or self.default_schedule()
        t0, t1 = time_range(schedule, t_start, t_end)
        a0, a1 = schedule.alpha(t0).to(x_T.device), schedule.alpha(t1).to(x_T.device)
        sb0, sb1 = schedule.sigma_bar(t0).to(x_T.device), schedule.sigma_bar(t1).to(x_T.device)
        mu, var = self.means[0].to(x_T.device), self.var[0].to(x_T.device)
        xbar = mu + (as_f64(x_T) / a0 - mu) * torch.sqrt((var + sb1 * sb1) / (var + sb0 * sb0))
        return a1 * xbar

    def reference(
        self, x_T: Tensor, schedule: Schedule | None = None, t_start: float | None = None,
        t_end: float | None = None, rtol: float = 1e-10, atol: float = 1e-10,
        on_eval: Callable[[Point], None] | None = None,
    ) -> Tensor:
        """x(t_end) of dx̄/dσ̄ = ε(x̄, σ̄), solved by dopri8 in u = log σ̄ (dx̄/du = σ̄ ε), float64.

        The flow in (x̄, σ̄) does not depend on the schedule; only the end points and the
        conversion x = α x̄ do. The closed-form ε is fast: `on_eval` (a progress hook) is not called.
        """
        schedule = schedule or self.default_schedule()
        t0, t1 = time_range(schedule, t_start, t_end)
        return self.reference_path(x_T, schedule, [t0, t1], rtol, atol)[-1]

    def exact_moments(self, schedule: Schedule, t: float) -> tuple[Tensor, Tensor]:
        """Mean and covariance of p_t = law of α x0 + σ z (VP coordinates): mean α Σ w_k μ_k, covariance
        α² (Σ w_k (diag s_k² + μ_k μ_kᵀ) − m mᵀ) + σ² I."""
        p = make_point(schedule, t)
        w, mu, var = self.weights.to(F64).cpu(), self.means.to(F64).cpu(), self.var.to(F64).cpu()
        m0 = w @ mu
        second = torch.diag(w @ var) + (mu * w[:, None]).T @ mu
        cov = p.alpha**2 * (second - torch.outer(m0, m0)) + p.sigma**2 * torch.eye(mu.shape[1], dtype=F64)
        return p.alpha * m0, cov

    def reference_path(
        self, x_T: Tensor, schedule: Schedule, times: Tensor | list[float], rtol: float = 1e-10, atol: float = 1e-10
    ) -> Tensor:
        """The reference flow from x_T at times[0] through every later time (monotone), VP coords, (T, n, d).

        Every output time is a step boundary (step_t), so no value comes from torchdiffeq's
        lower-order dense output.
        """
        ts = as_f64(times).cpu().reshape(-1)
        schedule.check_times(ts, "reference times")
        alpha, u = schedule.alpha(ts), torch.log(schedule.sigma_bar(ts))

        def f(u_now: Tensor, xbar: Tensor) -> Tensor:
            s = torch.exp(u_now)
            return s * self.eps_bar(xbar, s)

        xbar_T = as_f64(x_T).cpu() / float(alpha[0])
        xbar = torchdiffeq.odeint(f, xbar_T, u, method="dopri8", rtol=rtol, atol=atol, options={"step_t": u})
        return (xbar * alpha[:, None, None]).to(x_T.device)
