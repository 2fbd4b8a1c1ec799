"""Small ε-networks trained by `diffsolve train`, their data, and the loader of the shipped checkpoints.

toy-2d:     an MLP ε_θ(x, t) on a ring of 8 Gaussians in the plane (density known in closed form);
digits-8x8: a tiny UNet ε_θ(x, t) on scikit-learn's 8×8 digits, values v ∈ {0…16} dequantized and
            mapped to [−1, 1] by x = 2(v + u)/17 − 1, u ~ U[0, 1).
Both are trained on the continuous linear VP schedule; the network's time input is t ∈ [t_min, 1].
toy-2d-flow: the toy-2d MLP trained as a velocity v_θ(x, σ) = ε − x0 on the rectified flow (`Flow`).
"""

from __future__ import annotations

import math
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import DiffsolveError, ModelError
from .models import PREDICTIONS, Model, wrap
from .schedules import from_config
from .valuecache import ValueCache

PRETRAINED = ("toy-2d", "digits-8x8", "toy-2d-flow")
DIGIT_LEVELS = 17  # sklearn's digits take the integer values 0…16


# ---- data ---------------------------------------------------------------------------------
RING_MODES, RING_RADIUS, RING_STD = 8, 1.5, 0.15


def ring_means() -> Tensor:
    """The 8 means (R cos 2πk/8, R sin 2πk/8) of the toy-2d ring, float64."""
    ang = torch.arange(RING_MODES, dtype=torch.float64) * (2 * math.pi / RING_MODES)
    return RING_RADIUS * torch.stack([ang.cos(), ang.sin()], 1)


def toy_2d(n: int, seed: int) -> Tensor:
    """n samples of the ring: (1/8) Σ_k N(m_k, 0.15² I), float32, from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(RING_MODES, (n,), generator=g)
    x = ring_means()[k] + RING_STD * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x.float()


def toy_2d_logp(x: Tensor, t_alpha: float = 1.0, t_sigma: float = 0.0) -> Tensor:
    """log p(x) of the ring's VP marginal at (α, σ): (1/8) Σ_k N(α m_k, (α² s² + σ²) I)."""
    x = x.to(torch.float64)
    var = t_alpha**2 * RING_STD**2 + t_sigma**2
    d2 = ((x[:, None, :] - t_alpha * ring_means()) ** 2).sum(-1)
    return torch.logsumexp(-0.5 * d2 / var, 1) - math.log(RING_MODES) - math.log(2 * math.pi * var)


_DATASETS = ValueCache(4)


def _digit_images() -> Tensor:
    """sklearn's 8×8 digits (1797, 8, 8), values 0…16, loaded once per process (callers index it: a copy)."""
    def load() -> Tensor:
        from sklearn.datasets import load_digits

        return torch.as_tensor(load_digits().images, dtype=torch.float32)
    return _DATASETS.get(("sklearn.datasets.load_digits", "images", "float32"), load)


def digits_levels(split: str = "train") -> Tensor:
    """sklearn's 8×8 digits as integer levels (N, 1, 8, 8); a fixed permutation: 1,500 train, 297 test."""
    images = _digit_images()
    perm = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(1234))
    idx = {"train": perm[:1500], "test": perm[1500:]}.get(split)
    if idx is None:
        raise ModelError(f"unknown digits split {split!r}; valid ones are train, test")
    return images[idx][:, None]


def dequantize(levels: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x = 2(v + u)/17 − 1 with u ~ U[0, 1): continuous data in [−1, 1)."""
    u = torch.rand(levels.shape, generator=generator, dtype=levels.dtype)
    return (levels + u) * (2.0 / DIGIT_LEVELS) - 1.0


def to_levels(x: Tensor) -> Tensor:
    """The inverse of `dequantize` up to u: v = floor((x + 1) 17/2), clipped to 0…16."""
    return torch.floor((x + 1.0) * (DIGIT_LEVELS / 2.0)).clamp(0, DIGIT_LEVELS - 1)


# ---- networks -----------------------------------------------------------------------------
MAX_FREQ = 50.0


def time_features(t: Tensor, dim: int) -> Tensor:
    """[sin(ω_j t), cos(ω_j t)] with ω_j geometric from 1 to 50 rad per unit t.

    Deliberately low frequencies (DDPM's embedding of 1000·t reaches 1000 rad): ε_θ is then smooth
    in t, so adaptive reference solves do not chase oscillations of the embedding.
    """
    half = dim // 2
    freqs = MAX_FREQ ** (torch.arange(half, device=t.device, dtype=t.dtype) / max(half - 1, 1))
    arg = t.reshape(-1, 1) * freqs
    return torch.cat([arg.sin(), arg.cos()], 1)


class TimeMLP(nn.Module):
    """t → sinusoidal features → a two-layer SiLU MLP."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(nn.Linear(dim, out), nn.SiLU(), nn.Linear(out, out))

    def forward(self, t: Tensor, dtype: torch.dtype) -> Tensor:
        return self.net(time_features(t.to(dtype), self.dim))


class MLPEps(nn.Module):
    """ε_θ(x, t) for vector data: [x, emb(t)] through `depth` SiLU layers of width `hidden`."""

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, temb: int = 32):
        super().__init__()
        self.temb = TimeMLP(temb, temb)
        layers: list[nn.Module] = [nn.Linear(dim + temb, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, dim))
        self.net = nn.Sequential(*layers)
        self.data_shape = (dim,)  # states are (batch, dim): checked before the first call

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(torch.cat([x, self.temb(t, x.dtype).expand(x.shape[0], -1)], 1))


class ResBlock(nn.Module):
    """GroupNorm–SiLU–conv twice, the time embedding added in between, plus a 1×1 skip."""

    def __init__(self, cin: int, cout: int, temb: int):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout)
        self.n2, self.c2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.c1(nn.functional.silu(self.n1(x))) + self.t(emb)[:, :, None, None]
        return self.skip(x) + self.c2(nn.functional.silu(self.n2(h)))


class TinyUNet(nn.Module):
    """ε_θ(x, t) for (B, 1, 8, 8) images: 8×8 (c) → 4×4 (2c) → 8×8 (c) with a skip connection."""

    def __init__(self, channels: int = 32, temb: int = 128, in_ch: int = 1):
        super().__init__()
        c = channels
        self.temb = TimeMLP(temb, temb)
        self.inp = nn.Conv2d(in_ch, c, 3, padding=1)
        self.enc = ResBlock(c, c, temb)
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.mid1, self.mid2 = ResBlock(2 * c, 2 * c, temb), ResBlock(2 * c, 2 * c, temb)
        self.up = nn.Conv2d(2 * c, c, 3, padding=1)
        self.dec = ResBlock(2 * c, c, temb)
        self.out = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, in_ch, 3, padding=1))
        self.data_shape = (in_ch, None, None)  # any even height and width

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = self.temb(t, x.dtype).expand(x.shape[0], -1)
        h0 = self.enc(self.inp(x), emb)
        h = self.mid2(self.mid1(self.down(h0), emb), emb)
        h = self.up(nn.functional.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(self.dec(torch.cat([h, h0], 1), emb))


ARCHS: dict[str, type[nn.Module]] = {"mlp": MLPEps, "unet": TinyUNet}


# ---- checkpoints --------------------------------------------------------------------------
def build_net(arch: str, config: dict[str, Any]) -> nn.Module:
    """An untrained network of a named architecture."""
    if arch not in ARCHS:
        raise ModelError(f"unknown architecture {arch!r}; valid ones are {', '.join(ARCHS)}")
    return ARCHS[arch](**config)


def checkpoint_path(name: str) -> Path:
    """Where the shipped checkpoint `name` lives inside the package."""
    return Path(str(resources.files("diffsolve") / "checkpoints" / f"{name}.pt"))


CHECKPOINT_KEYS = ("arch", "config", "schedule", "state_dict")


def open_checkpoint(path: str | Path) -> tuple[dict[str, Any], nn.Module]:
    """(the checkpoint, its network with the weights loaded): the one place a checkpoint file is read. Anything that
    makes it not a checkpoint `diffsolve train` writes (a file torch cannot read, missing keys, an unknown task name
    or architecture, weights of other shapes) raises one ModelError naming the file, what is wrong and the fix."""
    where = f"checkpoint {str(path)!r}"
    fix = "give a checkpoint written by `diffsolve train` (or train one: diffsolve train TASK --out PATH)"
    if not Path(path).is_file():
        raise ModelError(f"no checkpoint file {str(path)!r}; give a path written by `diffsolve train`")
    try:
        with warnings.catch_warnings():  # torch's notes on a foreign pickle's protocol: the error below says it
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — any file torch cannot read is the same wrong input
        raise ModelError(f"{str(path)!r} is not a checkpoint written by `diffsolve train` (torch.load cannot read "
                         f"it: {type(e).__name__}); {fix}") from None
    if not isinstance(ckpt, dict) or not set(CHECKPOINT_KEYS) <= set(ckpt) or not isinstance(ckpt["state_dict"], dict):
        raise ModelError(f"{str(path)!r} is not a checkpoint written by `diffsolve train` (it needs the keys "
                         f"{', '.join(CHECKPOINT_KEYS)}); wrap other networks in a diffsolve Model")
    if ckpt.get("name") not in PRETRAINED:
        raise ModelError(f"{where} was trained on task {ckpt.get('name')!r}, which diffsolve does not know (its "
                         f"tasks: {', '.join(PRETRAINED)}); the file was edited or is not from `diffsolve train`: "
                         f"{fix}")
    try:
        from_config(ckpt["schedule"])
    except DiffsolveError as e:
        raise ModelError(f"{where}: its schedule cannot be built ({e}); {fix}") from None
    if not isinstance(ckpt["config"], dict):
        raise ModelError(f"{where}: its config must be a dict of the architecture's arguments, got "
                         f"{ckpt['config']!r}; {fix}")
    prediction = ckpt.get("prediction", "eps")
    if not isinstance(prediction, str) or prediction not in PREDICTIONS:
        raise ModelError(f"{where}: its prediction {prediction!r} is not one diffsolve knows (valid ones are "
                         f"{', '.join(PREDICTIONS)}); the file was edited or is not from `diffsolve train`: {fix}")
    # first without memory (the meta device): a config of absurd sizes is refused by the weights' shapes, not by an
    # allocation; any error building it (a negative size, an argument of the wrong kind) is the config's
    _check_weights(_build(ckpt, where, fix, torch.device("meta")), ckpt["state_dict"],
                   f"{where} (architecture {ckpt['arch']!r})", fix)
    net = _build(ckpt, where, fix, torch.device("cpu"))
    net.load_state_dict(ckpt["state_dict"])
    return ckpt, net


def _build(ckpt: dict[str, Any], where: str, fix: str, device: torch.device) -> nn.Module:
    """The checkpoint's network on `device`; any error building it is one ModelError naming the file and config."""
    try:
        with device:
            return build_net(ckpt["arch"], ckpt["config"])
    except ModelError as e:
        raise ModelError(f"{where}: {e}; {fix}") from None
    except Exception as e:  # noqa: BLE001 — whatever the architecture raises on these arguments is the config's fault
        bad = [f"{k} = {v!r}" for k, v in ckpt["config"].items() if isinstance(v, (int, float)) and v <= 0]
        raise ModelError(f"{where}: its architecture {ckpt['arch']!r} cannot be built from config {ckpt['config']!r}"
                         + (f" ({', '.join(bad)} must be > 0)" if bad else "")
                         + f" ({type(e).__name__}: {str(e)[:200]}); {fix}") from None


def _check_weights(net: nn.Module, state: dict[str, Any], where: str, fix: str) -> None:
    """Refuse weights that do not fit the network: missing or unexpected names, or the first of another shape (what is
    wrong comes first: a caller may cut the line short)."""
    own = net.state_dict()
    missing, extra = [k for k in own if k not in state], [k for k in state if k not in own]
    if missing or extra:
        shown = "; ".join(f"{what}: {', '.join(keys[:3])}" + (" …" if len(keys) > 3 else "")
                          for what, keys in (("missing", missing), ("unexpected", extra)) if keys)
        raise ModelError(f"parameters of {where} do not fit its network ({shown}); the file is damaged or was "
                         f"edited: {fix}")
    for k, v in own.items():
        got = state[k]
        if not isinstance(got, Tensor) or got.shape != v.shape:
            shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
            raise ModelError(f"parameter {k!r} has shape {shape} in {where} but {tuple(v.shape)} in its network; the "
                             f"file is damaged or was edited: {fix}")


def load_checkpoint(path: str | Path, *, dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> tuple[Model, dict[str, Any]]:
    """(model on the checkpoint's schedule — ε or velocity, as it was trained — and the checkpoint's metadata)."""
    ckpt, net = open_checkpoint(path)
    net.to(device=device, dtype=dtype).eval().requires_grad_(False)
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return wrap(net, from_config(ckpt["schedule"]), ckpt.get("prediction", "eps")), meta


def load_pretrained(name: str, *, dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> Model:
    """The shipped model "toy-2d", "toy-2d-flow" (x of shape (B, 2)) or "digits-8x8" (x of shape (B, 1, 8, 8))."""
    if name not in PRETRAINED:
        raise ModelError(f"unknown pretrained model {name!r}; valid ones are {', '.join(PRETRAINED)}")
    path = checkpoint_path(name)
    if not path.exists():
        raise ModelError(
            f"the checkpoint {path} is missing; reinstall diffsolve or train it with "
            f"`diffsolve train {name.removesuffix('-flow')}`" + (" --schedule flow" if name.endswith("-flow") else "")
        )
    return load_checkpoint(path, dtype=dtype, device=device)[0]
