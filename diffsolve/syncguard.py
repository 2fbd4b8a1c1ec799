"""A tensor subclass that fails on every host-device synchronisation, to prove a loop never syncs.

Wrap a state in `SyncGuard` and run a solver's loop on it: any `.item()`, `.tolist()`, `bool()`,
`float()`, `nonzero()`, `.cpu()`, `.numpy()` or data-dependent shape on a tensor derived from it
raises `HostSyncError`, naming the operation. On CUDA the same check is
`torch.cuda.set_sync_debug_mode("error")`; this one works on the CPU too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class HostSyncError(RuntimeError):
    """A device value was read on the host inside a region that must not synchronise."""


_FORBIDDEN = {
    Tensor.item, Tensor.tolist, Tensor.__bool__, Tensor.__float__, Tensor.__int__, Tensor.__index__,
    Tensor.nonzero, Tensor.cpu, Tensor.numpy,
    torch.nonzero, torch.masked_select, torch.unique, torch.where,
}
_ALLOWED_TO_DEVICE = {"to"}


class SyncGuard(Tensor):
    """Propagates through every op; raises on host reads (see module docstring)."""

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _FORBIDDEN:
            # torch.where with a single argument is nonzero; the 3-argument form is arithmetic
            if func is not torch.where or len(args) + len(kwargs) == 1:
                name = getattr(func, "__name__", repr(func))
                raise HostSyncError(f"host synchronisation '{name}' on a guarded tensor inside the step loop")
        if func is Tensor.to and any(
            (isinstance(a, (str, torch.device)) and torch.device(a).type == "cpu") for a in args
        ):
            raise HostSyncError("device-to-host copy '.to(cpu)' on a guarded tensor inside the step loop")
        return super().__torch_function__(func, types, args, kwargs)


def guard(x: Tensor) -> SyncGuard:
    """x as a SyncGuard tensor (shares its storage)."""
    return x.as_subclass(SyncGuard)
