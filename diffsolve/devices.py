"""The one check of a device the user names (`device=` in the Python API, `--device` on the command line)."""

from __future__ import annotations

from typing import Any

import torch

from .errors import DiffsolveError


def available_devices() -> str:
    """The devices this machine has, in words: 'cpu' or 'cpu or cuda:0 … cuda:N'."""
    if not torch.cuda.is_available():
        return "cpu"
    return f"cpu or cuda:0 … cuda:{torch.cuda.device_count() - 1}"


def check_device(device: Any, what: str = "device") -> torch.device:
    """`device` as a torch.device this machine has; anything else (not a device name, CUDA on a CPU-only torch, no
    such GPU, a backend not built in) is a DiffsolveError naming the value and the devices there are."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DiffsolveError(f"{what} {device!r} is not a torch device; give e.g. cpu or cuda:0") from None
    try:
        torch.empty(1, device=dev)
    except Exception as e:  # noqa: BLE001 — no CUDA, no such GPU, a backend not built in: all the same to the user
        first = str(e).splitlines()[0] if str(e) else ""
        raise DiffsolveError(f"{what} {device!r} is not available on this machine ({type(e).__name__}: {first}); "
                             f"give {available_devices()}") from None
    return dev
