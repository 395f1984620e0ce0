"""The compiled masking modules (setup.py builds them with mypyc) as the tests see them.

`stale()` names compiled modules whose Python source changed after they were built: the tests
would run the old code, so the suite refuses to start. `prefer_source()` makes the imports
take the Python source rather than the compiled module, so that the same tests can check the
pure-Python build (AIGW_PURE_PYTHON=1).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "gateway.masking"
_DIR = ROOT / "gateway" / "masking"


def compiled_modules() -> list[Path]:
    """The extension modules built next to the masking sources."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted(p for p in _DIR.iterdir() if p.name.endswith(suffixes))


def _source_of(ext: Path) -> Path:
    return ext.with_name(ext.name.split(".", 1)[0] + ".py")


def stale() -> list[str]:
    """Sources edited since their module was compiled."""
    out = []
    for ext in compiled_modules():
        source = _source_of(ext)
        if source.exists() and source.stat().st_mtime > ext.stat().st_mtime:
            out.append(source.name)
    return out


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the masking modules' .py files before the path finder finds their extensions."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        source = _DIR / f"{name}.py"
        if package != PACKAGE or not source.exists():
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def prefer_source() -> None:
    """From now on, import the masking modules from their Python source."""
    if PACKAGE in sys.modules:
        raise RuntimeError(f"{PACKAGE} was imported before prefer_source()")
    sys.meta_path.insert(0, _SourceFirst())
