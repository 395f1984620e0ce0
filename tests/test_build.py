"""The modules setup.py compiles with mypyc (the masking engine, budgets and rate limits,
routing, the upstream client, the stream decoders and the ledger chain), as built: compiled
where setup.py could, and the same tests passing on their pure-Python source (the build without
a C compiler)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import compiled

PURE = bool(os.environ.get("AIGW_PURE_PYTHON"))
TESTS = Path(__file__).resolve().parent
# The tests of the compiled modules, run again on their source.
OF_COMPILED = [
    "gateway/masking",
    "gateway/governance",
    "gateway/routing",
    "gateway/pricing",
    "gateway/test_tokens.py",
    "gateway/test_governance.py",
    "gateway/test_routing.py",
    # the upstream client, the stream decoders and the ledger chain
    "gateway/test_upstream_http.py",
    "gateway/test_faults.py",
    "gateway/test_openai_sdk.py",
    "gateway/test_anthropic_sdk.py",
    "gateway/translate",
    "gateway/ledger",
    "test_build.py",  # which asserts that the run imports the sources
]


def test_the_tests_run_the_build_they_mean() -> None:
    """With AIGW_PURE_PYTHON each compiled module comes from its source; otherwise from its
    extension when one was built."""
    built = set(compiled.compiled_modules())
    for source in compiled.sources():
        module = importlib.import_module(compiled.module_name(source))
        loaded = Path(str(module.__file__))
        if PURE or not built:
            assert loaded.suffix == ".py", loaded
        else:
            assert loaded in built, loaded


def test_the_list_is_of_sources_that_exist() -> None:
    assert all(s.is_file() for s in compiled.sources())
    assert all((TESTS / t).exists() for t in OF_COMPILED)


@pytest.mark.skipif(PURE, reason="this is the pure-Python run")
def test_the_python_source_passes_the_same_tests() -> None:
    if not compiled.compiled_modules():
        pytest.skip("nothing is compiled here: the suite already ran the Python source")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         *(str(TESTS / t) for t in OF_COMPILED)],
        env={**os.environ, "AIGW_PURE_PYTHON": "1"},
        cwd=compiled.ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
