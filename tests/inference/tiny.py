"""The tiny test model: written by tiny_model.py with the engine's python, described by a
manifest like the model store's. For the engine tests here and the gateway's."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from inference.manifest import Manifest, parse_manifest

TINY_MODEL_SCRIPT = Path(__file__).with_name("tiny_model.py")
TINY_MODEL_NAME = "tiny"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1"}


def write_tiny_model(python: Path, out: Path, size: tuple[int, int] | None = None) -> Path:
    """Write the tiny random Llama into `out` with the engine's python; returns `out`.
    `size` (hidden, layers) makes a larger one of the same shape (the benchmark's)."""
    env = {**os.environ, **OFFLINE, "TMPDIR": str(out.parent)}
    done = subprocess.run(
        [str(python), str(TINY_MODEL_SCRIPT), str(out), *map(str, size or ())],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tiny_model.py failed ({done.returncode}): {done.stderr[-2000:]}")
    return out


def tiny_manifest(folder: Path, name: str = TINY_MODEL_NAME) -> Manifest:
    """A manifest for the tiny model's folder, with every file's hash."""
    files = [
        {
            "path": p.name,
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "size": p.stat().st_size,
        }
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != "manifest.json"
    ]
    return parse_manifest(
        {
            "name": name,
            "format": "safetensors",
            "license": "apache-2.0",
            "context_length": 512,
            "description": "a random two-layer Llama for tests",
            "engine": {"dtype": "bfloat16"},
            "files": files,
        }
    )
