"""The user's data as a yardstick for any model: sliced W2, MMD² and a Fréchet distance in a feature space between
a cell's samples and real samples, each beside the value an exact sampler of the data would get (its floor).

Data: a tensor, a numpy array, or the path of a .pt tensor / .npy array, shape (N, *sample_shape) or flat (N, dim),
floating point and finite, in the coordinates the model was trained on (e.g. images in [−1, 1]); beyond DATA_MAX
samples a seeded subsample is used. A run's data are keyed by a hash of the samples used (the cell field `data`),
its feature network by its weights or a given fingerprint (the cell field `features`): changed data recompute.

Coordinates: a cell's samples x (VP coordinates at t_end, where the exact-sample SW2 is taken) are compared in data
coordinates x̄ = x/α(t_end) — the x̄ of the DDIM ODE, x̄ = x0 + σ̄_end·ε, the data up to the last noise level σ̄_end
(1e-2 on the linear VP schedule) — so that they sit on the data's scale whatever the schedule (VP, VE, flow).

Splits and floors: the data are permuted SPLITS times (seeded); split k is a reference half B_k (⌊N/2⌋ samples) and
the rest A_k. A cell's first m = min(n, N − ⌊N/2⌋) samples are compared with B_0; each floor is the same statistic
between m samples of A_k and B_k — what an exact sampler scores at this sample size — over the splits: the mean
for SW2 and FD (positive, biased estimators), the root mean square for the unbiased MMD² (mean 0 when the laws
agree: the RMS is its noise). Halves, not a resample of the data with replacement: a resample shares samples with
the reference, and those ties would pull the floor below what any independent sampler can reach.

MMD² uses the Gaussian kernel exp(−‖x−y‖²/(2h²)) with h the median distance between data samples (fixed by the
data, the same for every cell). FD needs `features`: a callable batch (B, *sample_shape) → (B, F) (a network of the
user's own; nothing is downloaded), fingerprinted by its weights (an nn.Module) or by `features_fingerprint`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checks import Option
from ..errors import DiffsolveError
from ..problems import load_attr
from ..problems.base import Unhashable, generator, state_hash
from ..valuecache import ValueCache
from . import metrics

F64 = torch.float64
DATA_MAX = 2048  # samples used at most (a seeded subsample beyond): enough for cells of n ≤ 1024
DATA_MIN = 16  # fewer cannot be split into two halves that give a floor
SPLITS = 8  # random half splits the floors are taken over
FEATURE_BATCH = 256
_STREAM_SUBSAMPLE, _STREAM_SPLIT = 11, 12
DATA_FIELDS = ("data_n", "data_sw2", "data_sw2_floor", "data_mmd2", "data_mmd2_floor", "data_fd", "data_fd_floor")
DATA_SUFFIXES = (".pt", ".pth", ".npy")

_LOADED = ValueCache(4)  # (path, mtime, size) → the tensor read from a data file
_ADOPTED = ValueCache(None)  # 'data:<hash>' → data (float64, CPU), 'features:…' → callable, for this process's cells
FeatureFn = Callable[[Tensor], Tensor]


class DataError(DiffsolveError):
    """Data or a feature network that cannot be used as a yardstick (unreadable, wrong shape, NaN, too few)."""


def _read(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise DataError(f"data file {str(path)!r} has suffix {suffix!r}; give a .pt tensor (torch.save(x, path)) or "
                        f"a .npy array (numpy.save(path, x)) of real samples, shape (N, *sample_shape)")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — any unreadable file gets the same message
        raise DataError(f"data file {str(path)!r} cannot be read ({type(e).__name__}: {str(e)[:120]}); save the "
                        f"samples with torch.save(tensor, path) or numpy.save(path, array)") from None


def load_data(value: Any) -> Tensor:
    """The data as a float64 CPU tensor (at most DATA_MAX samples) from a tensor, a numpy array or a .pt/.npy path,
    checked: floating point, shape (N, …) with N ≥ DATA_MIN, every value finite."""
    where = "data"
    if isinstance(value, (str, Path)):
        path, where = Path(value), f"data file {str(value)!r}"
        if not path.is_file():
            raise DataError(f"{where} does not exist; give the path of a .pt tensor or .npy array of real samples, "
                            f"shape (N, *sample_shape)")
        st = path.stat()
        value = _LOADED.get((str(path.resolve()), st.st_mtime_ns, st.st_size), lambda: _read(path))
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value)) if value.dtype.kind in "fiub" else value
    if not isinstance(value, Tensor):
        raise DataError(f"{where} must be a tensor, a numpy array or the path of a .pt / .npy file, got a "
                        f"{type(value).__name__}; save one tensor of shape (N, *sample_shape), e.g. torch.save(x, p)")
    return _checked(value.detach(), where)


def _checked(data: Tensor, where: str) -> Tensor:
    if not data.is_floating_point():
        raise DataError(f"{where} holds {data.dtype} values; give floating-point samples in the scale the model was "
                        f"trained on, e.g. x.float() / 127.5 - 1 for 8-bit images in [-1, 1]")
    if data.ndim < 2:
        raise DataError(f"{where} has shape {tuple(data.shape)}; give shape (N, *sample_shape) with one sample per "
                        f"row, e.g. x[:, None] for N one-dimensional samples")
    Option("data samples N", "int", low=DATA_MIN).check(
        data.shape[0], owner=where, fix=f"too few samples for a floor (two halves of the data): give at least "
                                       f"{DATA_MIN}, ideally 2n or more so every sample of a cell is compared",
        error=DataError)
    bad = ~torch.isfinite(data.reshape(data.shape[0], -1)).all(1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).reshape(-1)
        raise DataError(f"{where} has non-finite values (NaN or Inf) in {rows.numel()} sample(s), the first at row "
                        f"{int(rows[0])}; remove those samples, e.g. x[torch.isfinite(x).flatten(1).all(1)]")
    if data.shape[0] > DATA_MAX:
        keep = torch.randperm(data.shape[0], generator=generator(0, _STREAM_SUBSAMPLE))[:DATA_MAX]
        data = data[keep]
    return data.to("cpu", F64).contiguous()


def adopt_data(value: Any) -> str:
    """Load and check `value` (see load_data), remember it for this process's cells; returns its content hash."""
    data = load_data(value)
    key = "data:" + state_hash(data, "data")
    _ADOPTED.put(key, data)
    return key


def lookup(key: str) -> Any:
    """The data ('data:…') or the feature network ('features:…') adopted under `key` in this process."""
    value = _ADOPTED.peek(key)
    if value is None:
        raise DataError(f"{key!r} is not loaded in this process; expand the suite again with its data and features "
                        f"(data=… or --data FILE; features=… or --features module:attr)")
    return value


def check_shape(data: Tensor, shape: tuple[int, ...], problem: str) -> None:
    """Raise unless the data's samples have the model's sample shape (or are flat with its dimension)."""
    dim = math.prod(shape)
    if tuple(data.shape[1:]) not in (tuple(shape), (dim,)):
        raise DataError(
            f"the data's samples have shape {tuple(data.shape[1:])} but problem {problem!r} makes samples of shape "
            f"{tuple(shape)}; give data of shape (N, {', '.join(map(str, shape))}) (or flat (N, {dim})) in the "
            f"coordinates the model was trained on")


def adopt_features(value: Any, fingerprint: str | None = None) -> str:
    """Remember a feature network (a callable, or 'module:attr' / 'file.py:attr') for this process's cells; returns
    its fingerprint: `fingerprint` when given, else a hash of its class and weights (an nn.Module)."""
    fn = load_attr(value, "features", "a callable batch → (B, F) features, e.g. an nn.Module") \
        if isinstance(value, str) else value
    if not callable(fn):
        raise DataError(f"features must be a callable batch (B, *sample_shape) → (B, F) tensor (e.g. an nn.Module) "
                        f"or 'module:attr', got a {type(fn).__name__}")
    if fingerprint is not None:
        fp = "features:given:" + Option("features_fingerprint", "str").check(fingerprint, error=DataError)
    else:
        try:
            fp = "features:" + state_hash(fn, "features")
        except Unhashable as e:
            raise DataError(f"features {value!r} cannot be fingerprinted ({e} cannot be hashed), so a changed feature "
                            f"network could not be told from the old; give an nn.Module (hashed by its weights) or "
                            f"features_fingerprint='…' (CLI: --features-fingerprint S), a string that changes whenever "
                            f"its numbers do") from None
    _ADOPTED.put(fp, fn)
    return fp


def _placement(fn: FeatureFn) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of a module's first floating parameter (float32 on the CPU for other callables)."""
    if isinstance(fn, nn.Module):
        for p in fn.parameters():
            if p.is_floating_point():
                return p.dtype, p.device
    return torch.float32, torch.device("cpu")


def features_of(fn: FeatureFn, x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """fn on batches of samples reshaped to `shape` (no gradients): (n, F) float64 features, checked finite."""
    dtype, device = _placement(fn)
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], FEATURE_BATCH):
            batch = x[i:i + FEATURE_BATCH].reshape(-1, *shape).to(device=device, dtype=dtype)
            f = fn(batch)
            if not isinstance(f, Tensor) or f.ndim != 2 or f.shape[0] != batch.shape[0]:
                got = f"shape {tuple(f.shape)}" if isinstance(f, Tensor) else f"a {type(f).__name__}"
                raise DataError(f"features must map a batch of {batch.shape[0]} samples of shape {tuple(shape)} to a "
                                f"({batch.shape[0]}, F) tensor, got {got}; flatten its output, e.g. f(x).flatten(1)")
            if not bool(torch.isfinite(f).all()):
                raise DataError("features returned NaN or Inf; check the feature network on inputs in the model's "
                                "data scale")
            out.append(f.detach().to("cpu", F64))
    return torch.cat(out)


@dataclass(frozen=True, eq=False)
class Yardstick:
    """What every cell of a sweep is compared with: the reference half B_0, the kernel bandwidth h, k(B_0, B_0),
    B_0's features and the floors at m samples per cell."""

    m: int
    ref: Tensor
    directions: Tensor
    bandwidth: float
    ref_kernel: Tensor
    ref_features: Tensor | None
    features: FeatureFn | None
    shape: tuple[int, ...]
    floors: dict[str, float | None]

    def measure(self, xbar: Tensor) -> dict[str, Any]:
        """The data fields of a cell from its samples in data coordinates x̄ (its first m are used)."""
        x = xbar.detach().to("cpu", F64).reshape(xbar.shape[0], -1)[: self.m]
        kxx = metrics.gaussian_kernel(x, x, self.bandwidth)
        out: dict[str, Any] = {
            "data_n": self.m, "data_sw2": metrics.sliced_w2(x, self.ref, self.directions),
            "data_mmd2": metrics.mmd2_from_kernels(kxx, self.ref_kernel,
                                                   metrics.gaussian_kernel(x, self.ref, self.bandwidth)),
            "data_fd": None if self.features is None else metrics.frechet_distance(
                features_of(self.features, x, self.shape), self.ref_features),
        }
        out.update({f"{k}_floor": v for k, v in self.floors.items()})
        return out


def yardstick(data: Tensor, n: int, shape: tuple[int, ...], projections: int,
              features: FeatureFn | None = None) -> Yardstick:
    """The yardstick for cells of n samples: B_0, h from the data, and the floors over SPLITS half splits."""
    d = data.reshape(data.shape[0], -1)
    total = d.shape[0]
    half = total // 2
    m = min(n, total - half)
    dirs = metrics.projections(d.shape[1], projections)
    h = metrics.median_bandwidth(d)
    kernel = metrics.gaussian_kernel(d, d, h)
    feats = None if features is None else features_of(features, d, shape)
    sw2, mmd2, fd = [], [], []
    splits = [torch.randperm(total, generator=generator(k, _STREAM_SPLIT)) for k in range(SPLITS)]
    for perm in splits:
        b, a = perm[:half], perm[half:half + m]
        sw2.append(metrics.sliced_w2(d[a], d[b], dirs))
        mmd2.append(metrics.mmd2_from_kernels(kernel[a][:, a], kernel[b][:, b], kernel[a][:, b]))
        if feats is not None:
            fd.append(metrics.frechet_distance(feats[a], feats[b]))
    b0 = splits[0][:half]
    floors = {"data_sw2": sum(sw2) / SPLITS, "data_mmd2": math.sqrt(sum(v * v for v in mmd2) / SPLITS),
              "data_fd": sum(fd) / SPLITS if fd else None}
    return Yardstick(m, d[b0], dirs, h, kernel[b0][:, b0], None if feats is None else feats[b0], features,
                     tuple(shape), floors)
