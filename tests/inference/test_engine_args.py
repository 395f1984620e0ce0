"""The vLLM command line and environment derived from a manifest, the box and the GPUs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance.config import InferenceConfig
from inference.engine_args import (
    CACHE_DIRS,
    engine_command,
    engine_environment,
    ensure_cache_dirs,
    resolve_device,
    tensor_parallel_size,
)
from inference.manifest import Manifest, parse_manifest

PY = Path("/opt/aigw/engine/bin/python")
MODEL = Path("/var/lib/aigw/models/tiny")


def manifest(**engine: Any) -> Manifest:
    """A manifest for a 512-token model with the given engine hints."""
    return parse_manifest(
        {
            "name": "tiny",
            "format": "safetensors",
            "license": "apache-2.0",
            "context_length": 512,
            "engine": engine,
            "files": [{"path": "config.json", "sha256": "0" * 64, "size": 1}],
        }
    )


def command(m: Manifest, device: str, gpus: int = 0, **cfg: Any) -> list[str]:
    """The argv on port 8200 with the given device, GPU count and configuration."""
    return engine_command(
        m, MODEL, 8200, python=PY, gpu_count=gpus, device=device, cfg=InferenceConfig(**cfg)
    )


def flag(argv: list[str], name: str) -> str | None:
    """The value after `name` in argv, or None when it is absent."""
    return argv[argv.index(name) + 1] if name in argv else None


def test_cpu_command_in_full() -> None:
    argv = command(manifest(), "cpu", cpu_kv_cache_bytes=64 << 20)
    assert argv == [
        str(PY), "-m", "vllm.entrypoints.openai.api_server",
        "--host", "127.0.0.1", "--port", "8200",
        "--model", str(MODEL), "--served-model-name", "tiny",
        "--max-model-len", "512", "--dtype", "bfloat16",
        "--enforce-eager", "--kv-cache-memory-bytes", "67108864",
        "--disable-uvicorn-access-log",
    ]  # fmt: skip


def test_cuda_command_in_full() -> None:
    argv = command(manifest(dtype="float16"), "cuda", gpus=2, gpu_memory_utilization=0.85)
    assert argv == [
        str(PY), "-m", "vllm.entrypoints.openai.api_server",
        "--host", "127.0.0.1", "--port", "8200",
        "--model", str(MODEL), "--served-model-name", "tiny",
        "--max-model-len", "512", "--dtype", "float16",
        "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.85",
        "--disable-uvicorn-access-log",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("gpus", "size"), [(0, 1), (1, 1), (2, 2), (3, 2), (4, 4), (6, 4), (7, 4), (8, 8), (12, 8)]
)
def test_tensor_parallel_size_is_a_power_of_two(gpus: int, size: int) -> None:
    assert tensor_parallel_size(gpus) == size
    assert flag(command(manifest(), "cuda", gpus=gpus), "--tensor-parallel-size") == str(size)


def test_dtype() -> None:
    assert flag(command(manifest(), "cpu"), "--dtype") == "bfloat16"  # auto on CPUs
    assert flag(command(manifest(), "cuda", 1), "--dtype") == "auto"
    assert flag(command(manifest(dtype="float32"), "cpu"), "--dtype") == "float32"


def test_model_hints() -> None:
    m = manifest(
        quantization="awq",
        max_model_len=256,
        tokenizer_mode="slow",
        trust_remote_code=True,
        args=["--enable-prefix-caching", "--max-num-seqs=8"],
    )
    argv = command(m, "cuda", 1)
    assert flag(argv, "--quantization") == "awq"
    assert flag(argv, "--max-model-len") == "256"
    assert flag(argv, "--tokenizer-mode") == "hf"  # vLLM 0.32 has no "slow"
    assert "--trust-remote-code" in argv
    assert argv[-2:] == ["--enable-prefix-caching", "--max-num-seqs=8"]


def test_no_optional_flags_unless_asked() -> None:
    argv = command(manifest(), "cpu")
    for absent in ("--quantization", "--tokenizer-mode", "--trust-remote-code"):
        assert absent not in argv
    assert "--kv-cache-memory-bytes" not in argv  # 0: vLLM's default
    assert "--gpu-memory-utilization" not in argv and "--tensor-parallel-size" not in argv
    assert "--enforce-eager" not in command(manifest(), "cuda", 1)


def test_device_must_be_resolved() -> None:
    with pytest.raises(ValueError, match="resolve_device"):
        command(manifest(), "auto")


def test_resolve_device() -> None:
    assert resolve_device("auto", 0) == "cpu"
    assert resolve_device("auto", 2) == "cuda"
    assert resolve_device("cpu", 4) == "cpu"
    assert resolve_device("cuda", 0) == "cuda"
    with pytest.raises(ValueError, match="rocm"):
        resolve_device("rocm", 1)


BASE = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/var/lib/aigw",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HTTPS_PROXY": "http://proxy:3128",
    "https_proxy": "http://proxy:3128",
    "NO_PROXY": "localhost",
    "HF_TOKEN": "hf_secret",
    "AIGW_ADMIN_TOKEN": "secret",
    "VLLM_CPU_KVCACHE_SPACE": "40",
    "CUDA_VISIBLE_DEVICES": "0,1",
    "PYTHONPATH": "/somewhere",
}


def test_environment_is_offline_and_private(tmp_path: Path) -> None:
    env = engine_environment(tmp_path, "cpu", BASE)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VLLM_NO_USAGE_STATS", "DO_NOT_TRACK"):
        assert env[key] == "1"
    assert {k: env[k] for k in ("PATH", "HOME", "LANG", "LC_ALL")} == {
        k: BASE[k] for k in ("PATH", "HOME", "LANG", "LC_ALL")
    }
    # No proxy, no token, no vLLM variable overriding the configuration, no PYTHONPATH.
    inherited = set(env) & set(BASE)
    assert inherited == {"PATH", "HOME", "LANG", "LC_ALL"}
    assert env["VLLM_CACHE_ROOT"] == str(tmp_path / "vllm-cache")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "torchinductor-cache")
    assert env["TMPDIR"] == str(tmp_path / "tmp-files")
    assert env["HF_HOME"] == str(tmp_path / "hf-home")
    assert env["PYTHONSAFEPATH"] == "1"
    # Nothing under the working directory may shadow a package (`triton` once did).
    assert all(not sub.isidentifier() for sub in CACHE_DIRS.values())


def test_environment_on_cuda_keeps_the_gpu_selection(tmp_path: Path) -> None:
    env = engine_environment(tmp_path, "cuda", BASE)
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert "CUDA_VISIBLE_DEVICES" not in engine_environment(tmp_path, "cpu", BASE)
    assert engine_environment(tmp_path, "cpu", {})["PATH"]  # a PATH even from nothing


def test_ensure_cache_dirs(tmp_path: Path) -> None:
    ensure_cache_dirs(tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(CACHE_DIRS.values())
    ensure_cache_dirs(tmp_path / "cache")  # again: nothing to do


def test_cpu_engines_bind_their_threads_to_the_configured_cores(tmp_path: Path) -> None:
    env = engine_environment(tmp_path, "cpu", BASE, "0-3")
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0-3"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in engine_environment(tmp_path, "cpu", BASE)
    assert "VLLM_CPU_OMP_THREADS_BIND" not in engine_environment(tmp_path, "cuda", BASE, "0-3")
