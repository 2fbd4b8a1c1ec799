"""k-diffusion's sampling.py, loaded by file path (its package __init__ needs torchvision and more); None when
k-diffusion is not installed (`pip install --no-deps k-diffusion`). sampling.py's `from . import utils` gets a
stand-in holding append_dims, the one name it uses, when the real utils.py does not import."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import torch

_NAME = "_tests_k_diffusion"


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_sampling() -> types.ModuleType | None:
    """k_diffusion/sampling.py as a module, or None when k-diffusion is missing."""
    if f"{_NAME}.sampling" in sys.modules:
        return sys.modules[f"{_NAME}.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    package = types.ModuleType(_NAME)
    package.__path__ = [str(root)]
    sys.modules[_NAME] = package
    try:
        package.utils = _load(f"{_NAME}.utils", root / "utils.py")
    except ImportError:
        utils = types.ModuleType(f"{_NAME}.utils")

        def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
            return x[(...,) + (None,) * (target_dims - x.ndim)]

        utils.append_dims = append_dims
        package.utils = sys.modules[utils.__name__] = utils
    return _load(f"{_NAME}.sampling", root / "sampling.py")
