"""The peer libraries the benchmarks compare with: k-diffusion's sampling.py (loaded by file path) and diffusers."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

from torch import Tensor

INSTALL = {"k-diffusion": "pip install --no-deps k-diffusion", "diffusers": "pip install diffusers"}


class MissingPeer(Exception):
    """A peer library is not installed (its name is the message)."""


def _load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_k_diffusion_sampling() -> tuple[types.ModuleType, str]:
    """k_diffusion/sampling.py loaded by file path (the package __init__ needs torchvision and more).

    Its `from . import utils` gets the real utils.py when that imports; otherwise (utils.py imports
    torchvision, PIL, safetensors) a stand-in holding `append_dims`, the one name sampling.py uses.
    Returns (the module, a note on how it was loaded); raises MissingPeer when k-diffusion is not installed.
    """
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise MissingPeer("k-diffusion")
    root = Path(list(spec.submodule_search_locations)[0])
    pkg = types.ModuleType("_peer_k_diffusion")
    pkg.__path__ = [str(root)]
    sys.modules[pkg.__name__] = pkg
    try:
        pkg.utils = _load_file(f"{pkg.__name__}.utils", root / "utils.py")
        note = "k_diffusion/sampling.py with its own utils.py"
    except ImportError as e:
        utils = types.ModuleType(f"{pkg.__name__}.utils")

        def append_dims(x: Tensor, target_dims: int) -> Tensor:
            """x with trailing singleton dimensions up to `target_dims`."""
            return x[(...,) + (None,) * (target_dims - x.ndim)]

        utils.append_dims = append_dims
        pkg.utils = sys.modules[utils.__name__] = utils
        note = f"k_diffusion/sampling.py; its utils.py does not import here ({e}), so a stand-in gave append_dims"
    sampling = _load_file(f"{pkg.__name__}.sampling", root / "sampling.py")
    version = importlib.metadata.version("k-diffusion")
    return sampling, f"k-diffusion {version}: {note}"


def load_diffusers() -> types.ModuleType:
    """The diffusers package; raises MissingPeer when it is not installed."""
    try:
        import diffusers
    except ImportError:
        raise MissingPeer("diffusers") from None
    return diffusers


def missing_note(peer: MissingPeer) -> str:
    """'NAME is not installed: INSTALL COMMAND'."""
    return f"{peer} is not installed: {INSTALL[str(peer)]}"
