"""Engine arguments derived from the real GPUs: tensor parallel size from the GPU count, the
memory utilization, and the CUDA device. Skipped until `inference.engine_args` exists (or when
a package it needs, such as orjson, is missing on this machine)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

from hwtests.hardware import skip_without_gpu
from inference.gpus import GpuReport

skip_without_gpu()


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        pytest.skip(f"cannot import {name}: no module named {exc.name!r}", allow_module_level=True)


engine_args = _import("inference.engine_args")
manifest = _import("inference.manifest")
config = _import("appliance.config")

MANIFEST = {
    "name": "tiny-llama",
    "format": "safetensors",
    "license": "apache-2.0",
    "context_length": 512,
    "engine": {"dtype": "bfloat16"},
    "files": [{"path": "model.safetensors", "sha256": "0" * 64, "size": 1}],
}


def _flag(argv: list[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value`; None when absent."""
    for i, arg in enumerate(argv):
        if arg == name:
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _largest_power_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def test_engine_command_from_the_real_gpus(report: GpuReport, tmp_path: Path) -> None:
    count = len(report.gpus)
    assert count >= 1, report.reason
    cfg = config.InferenceConfig()
    (tmp_path / "model.safetensors").write_bytes(b"\0")
    argv = engine_args.engine_command(
        manifest.parse_manifest(MANIFEST),
        tmp_path,
        8200,
        python=Path(sys.executable),
        gpu_count=count,
        device="cuda",
        cfg=cfg,
    )
    print(f"\n{count} GPU(s): {' '.join(argv)}")
    assert all(isinstance(a, str) for a in argv)
    assert _flag(argv, "--tensor-parallel-size") == str(_largest_power_of_two(count))
    memory = _flag(argv, "--gpu-memory-utilization")
    assert memory is not None and float(memory) == pytest.approx(cfg.gpu_memory_utilization)
    assert _flag(argv, "--device") in (None, "cuda")
    assert _flag(argv, "--kv-cache-memory-bytes") is None  # a CPU engine's setting
    assert _flag(argv, "--port") == "8200"
