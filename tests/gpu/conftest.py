"""GPU tests: each module sets `pytestmark = pytest.mark.gpu`; tests/conftest.py skips them without CUDA."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def cuda() -> torch.device:
    """The CUDA device (these tests are skipped where there is none)."""
    return torch.device("cuda")
