"""The masking engine as built: compiled by mypyc where setup.py could, and the same tests
passing on its pure-Python source (the build without a C compiler)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.masking import detectors, policy
from tests import compiled

PURE = bool(os.environ.get("AIGW_PURE_PYTHON"))
HERE = Path(__file__).resolve().parent


def test_the_tests_run_the_build_they_mean() -> None:
    """With AIGW_PURE_PYTHON the engine comes from its source; otherwise from the compiled
    modules when they were built."""
    files = [Path(str(m.__file__)) for m in (detectors, policy)]
    if PURE or not compiled.compiled_modules():
        assert all(f.suffix == ".py" for f in files), files
    else:
        assert all(f.suffix == ".so" for f in files), files


@pytest.mark.skipif(PURE, reason="this is the pure-Python run")
def test_the_python_source_passes_the_same_tests() -> None:
    if not compiled.compiled_modules():
        pytest.skip("nothing is compiled here: the suite already ran the Python source")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE)],
        env={**os.environ, "AIGW_PURE_PYTHON": "1"},
        cwd=compiled.ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
