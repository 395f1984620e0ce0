"""Fixtures of the hardware tests. Only the standard library, pytest and `inference.gpus` are
imported here: a bare machine with pytest and nvidia-ml-py can run them."""

from __future__ import annotations

import pytest

from inference.gpus import GpuReport, probe


@pytest.fixture(scope="session")
def report() -> GpuReport:
    """One NVML reading of this machine, shared by the session."""
    return probe()
