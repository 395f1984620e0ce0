"""The test suite. With AIGW_PURE_PYTHON=1 it imports the modules setup.py compiles (the masking
engine, governance, routing) from their Python source (see tests/compiled.py); this runs first,
before any test module imports the gateway."""

import os

if os.environ.get("AIGW_PURE_PYTHON"):
    from tests.compiled import prefer_source

    prefer_source()
