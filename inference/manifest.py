"""A model's manifest: what the model store keeps beside a model's files, and what a bundle's
signature covers.

`manifest.json` in the model's folder:

    {"version": 1, "name": "tiny-llama", "format": "safetensors", "license": "apache-2.0",
     "context_length": 512, "description": "",
     "engine": {"dtype": "bfloat16", "quantization": null, "max_model_len": null,
                "tokenizer_mode": null, "trust_remote_code": false, "args": []},
     "files": [{"path": "config.json", "sha256": "…", "size": 612}, …]}

`engine` holds what the model needs from vLLM; what depends on the box (tensor parallel size,
memory utilization, the port) is derived when the engine starts. Everything is validated here,
where the data enters: a manifest that parses can be trusted by the store and the engines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import orjson

MANIFEST_NAME = "manifest.json"
FORMATS = ("safetensors", "gguf", "pytorch")
DTYPES = ("auto", "bfloat16", "float16", "float32", "half", "float")
QUANTIZATIONS = ("awq", "gptq", "fp8", "bitsandbytes", "gguf", "compressed-tensors", "marlin")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Engine arguments a manifest may add: flags of `vllm serve` that describe the model. What
# the box decides (host, port, model path, served name, parallelism, memory) is not among them.
_ARG = re.compile(r"^--[a-z0-9][a-z0-9-]*(=[^\s]*)?$")
BOX_FLAGS = frozenset(
    {
        "--host",
        "--port",
        "--model",
        "--served-model-name",
        "--tensor-parallel-size",
        "--gpu-memory-utilization",
        "--kv-cache-memory-bytes",
        "--api-key",
        "--download-dir",
        "--load-format",
    }
)


class ManifestError(ValueError):
    """A manifest that cannot be used; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One file of a model, relative to its folder, with its SHA-256 and size in bytes."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class EngineHints:
    """What the model itself needs from vLLM."""

    dtype: str = "auto"
    quantization: str | None = None
    max_model_len: int | None = None  # None: the context length
    tokenizer_mode: str | None = None
    trust_remote_code: bool = False
    args: tuple[str, ...] = ()  # further `--flag[=value]` arguments


@dataclass(frozen=True, slots=True)
class Manifest:
    """A validated manifest."""

    name: str
    format: str
    license: str
    context_length: int
    files: tuple[ModelFile, ...]
    engine: EngineHints = field(default_factory=EngineHints)
    description: str = ""
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape (see the module's docstring)."""
        e = self.engine
        return {
            "version": self.version,
            "name": self.name,
            "format": self.format,
            "license": self.license,
            "context_length": self.context_length,
            "description": self.description,
            "engine": {
                "dtype": e.dtype,
                "quantization": e.quantization,
                "max_model_len": e.max_model_len,
                "tokenizer_mode": e.tokenizer_mode,
                "trust_remote_code": e.trust_remote_code,
                "args": list(e.args),
            },
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.files],
        }

    def to_json(self) -> bytes:
        """Canonical bytes (sorted keys, indented): what a bundle's signature covers."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)

    @property
    def total_bytes(self) -> int:
        """The size of all the model's files."""
        return sum(f.size for f in self.files)


def check_model_name(name: Any) -> str:
    """A model name as the store, the engines' unit names and the API take it."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ManifestError(
            f"name {name!r} is not valid: use 1-64 lower-case letters, digits and . _ -, "
            "starting with a letter or digit"
        )
    return name


def _want(raw: dict[str, Any], key: str, tp: type | tuple[type, ...], what: str) -> Any:
    value = raw.get(key)
    if (isinstance(value, bool) and tp is not bool) or not isinstance(value, tp):
        raise ManifestError(f"'{key}' must be {what}, not {value!r}")
    return value


def check_relative_path(path: Any) -> str:
    """A file path inside a model folder: relative, no '..', no backslashes."""
    if not isinstance(path, str) or not path or "\\" in path or "\x00" in path:
        raise ManifestError(f"file path {path!r} is not a relative path")
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or str(p) != path or path == MANIFEST_NAME:
        raise ManifestError(f"file path {path!r} must be relative, normalised, without '..'")
    return path


def _files(raw: Any) -> tuple[ModelFile, ...]:
    if not isinstance(raw, list) or not raw:
        raise ManifestError("'files' must be a non-empty list of {path, sha256, size}")
    seen: set[str] = set()
    out: list[ModelFile] = []
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"path", "sha256", "size"}:
            raise ManifestError(f"each file must be {{path, sha256, size}}, not {item!r}")
        path = check_relative_path(item["path"])
        if path in seen:
            raise ManifestError(f"file {path!r} is listed twice")
        seen.add(path)
        digest = item["sha256"]
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ManifestError(f"file {path!r}: sha256 must be 64 lower-case hex digits")
        size = item["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ManifestError(f"file {path!r}: size must be a non-negative integer")
        out.append(ModelFile(path, digest, size))
    return tuple(sorted(out, key=lambda f: f.path))


def _engine(raw: Any) -> EngineHints:
    if raw is None:
        return EngineHints()
    if not isinstance(raw, dict):
        raise ManifestError("'engine' must be an object")
    known = {"dtype", "quantization", "max_model_len", "tokenizer_mode", "trust_remote_code"}
    unknown = sorted(set(raw) - known - {"args"})
    if unknown:
        raise ManifestError(f"engine: unknown key {unknown[0]!r}; use {', '.join(sorted(known))}")
    dtype = raw.get("dtype") or "auto"
    if dtype not in DTYPES:
        raise ManifestError(f"engine: dtype {dtype!r} is unknown; use {', '.join(DTYPES)}")
    quant = raw.get("quantization")
    if quant is not None and quant not in QUANTIZATIONS:
        raise ManifestError(
            f"engine: quantization {quant!r} is unknown; use {', '.join(QUANTIZATIONS)}"
        )
    mml = raw.get("max_model_len")
    if mml is not None and (isinstance(mml, bool) or not isinstance(mml, int) or mml < 16):
        raise ManifestError("engine: max_model_len must be an integer >= 16")
    mode = raw.get("tokenizer_mode")
    if mode is not None and mode not in ("auto", "slow", "mistral"):
        raise ManifestError("engine: tokenizer_mode must be auto, slow or mistral")
    trust = raw.get("trust_remote_code", False)
    if not isinstance(trust, bool):
        raise ManifestError("engine: trust_remote_code must be true or false")
    args = raw.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) and _ARG.match(a) for a in args):
        raise ManifestError("engine: args must be a list of '--flag' or '--flag=value' strings")
    for a in args:
        flag = a.split("=", 1)[0]
        if flag in BOX_FLAGS:
            raise ManifestError(f"engine: {flag} is decided by the box, not the model")
    return EngineHints(dtype, quant, mml, mode, trust, tuple(args))


def parse_manifest(data: bytes | str | dict[str, Any]) -> Manifest:
    """Validate a manifest (its JSON bytes or the decoded object)."""
    if isinstance(data, bytes | str):
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ManifestError(f"the manifest is not valid JSON ({exc})") from None
    else:
        raw = data
    if not isinstance(raw, dict):
        raise ManifestError("the manifest must be a JSON object")
    allowed = {"version", "name", "format", "license", "context_length", "description"}
    unknown = sorted(set(raw) - allowed - {"engine", "files"})
    if unknown:
        raise ManifestError(f"unknown key {unknown[0]!r} in the manifest")
    if raw.get("version", 1) != 1:
        raise ManifestError(f"manifest version {raw.get('version')!r} is not supported (1 is)")
    fmt = _want(raw, "format", str, "a string")
    if fmt not in FORMATS:
        raise ManifestError(f"format {fmt!r} is unknown; use {', '.join(FORMATS)}")
    ctx = _want(raw, "context_length", int, "a positive integer")
    if ctx < 16:
        raise ManifestError("'context_length' must be at least 16 tokens")
    lic = _want(raw, "license", str, "a string (an SPDX id or the license's name)")
    if not lic.strip():
        raise ManifestError("'license' must not be empty")
    desc = raw.get("description", "")
    if not isinstance(desc, str):
        raise ManifestError("'description' must be a string")
    engine = _engine(raw.get("engine"))
    if engine.max_model_len is not None and engine.max_model_len > ctx:
        raise ManifestError("engine: max_model_len is above the context length")
    return Manifest(
        name=check_model_name(raw.get("name")),
        format=fmt,
        license=lic.strip(),
        context_length=ctx,
        files=_files(raw.get("files")),
        engine=engine,
        description=desc,
    )
