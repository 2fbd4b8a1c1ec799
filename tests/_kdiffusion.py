"""k-diffusion's sampling.py for the tests: the benchmarks' loader (benchmarks/peers.py), None when not installed."""

from __future__ import annotations

import types

from benchmarks.peers import MissingPeer, load_k_diffusion_sampling


def load_sampling() -> types.ModuleType | None:
    """k_diffusion/sampling.py as a module, or None when k-diffusion is missing."""
    try:
        return load_k_diffusion_sampling()[0]
    except MissingPeer:
        return None
