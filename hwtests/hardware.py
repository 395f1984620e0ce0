"""What the hardware tests need to know about the machine, with the standard library only."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest


def why_no_gpu() -> str | None:
    """Why this machine cannot run the hardware tests, or None when it can."""
    if importlib.util.find_spec("pynvml") is None:
        return "nvidia-ml-py (pynvml) is not installed: pip install nvidia-ml-py"
    if shutil.which("nvidia-smi") is None and not Path("/dev/nvidiactl").exists():
        return "no NVIDIA driver on this machine (no nvidia-smi, no /dev/nvidiactl)"
    return None


def skip_without_gpu() -> None:
    """Skip the calling test module, saying why, on a machine without an NVIDIA GPU."""
    reason = why_no_gpu()
    if reason is not None:
        pytest.skip(f"hardware tests need an NVIDIA GPU: {reason}", allow_module_level=True)


def smi_gpu_count() -> int | None:
    """How many GPUs `nvidia-smi -L` lists (MIG instances not counted); None without it."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=True)
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
