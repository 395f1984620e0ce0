"""Session fixtures for the real engine tests: vLLM's CPU environment and a tiny model.

`engine_python` is $AIGW_ENGINE_PYTHON when set, else the cached environment built by
`inference.engine_env.build` (about 4 minutes the first time on a machine, then instant).
Only a build that fails skips the engine tests, with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inference.engine_env import EngineEnvError, build, default_cache_path
from tests.inference.tiny import TINY_MODEL_NAME, write_tiny_model


@pytest.fixture(scope="session")
def engine_python() -> Path:
    """The python of an environment with vLLM's CPU build."""
    raw = os.environ.get("AIGW_ENGINE_PYTHON", "")
    if raw:
        return Path(raw)
    try:
        return build(default_cache_path())
    except EngineEnvError as exc:
        pytest.skip(f"vLLM's CPU environment could not be built: {exc}")


@pytest.fixture(scope="session")
def tiny_model(engine_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the tiny model (config, safetensors weights, tokenizer, chat template)."""
    return write_tiny_model(engine_python, tmp_path_factory.mktemp("models") / TINY_MODEL_NAME)
