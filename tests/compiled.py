"""The modules setup.py compiles with mypyc, as the tests see them.

The list is setup.py's own `COMPILED`. `stale()` names compiled modules whose Python source
changed after they were built: the tests would run the old code, so the suite refuses to start.
`prefer_source()` makes the imports take the Python source rather than the compiled module, so
that the same tests can check the pure-Python build (AIGW_PURE_PYTHON=1).
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def sources() -> list[Path]:
    """The Python sources setup.py compiles (its `COMPILED` list, read without running it)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets
        ):
            return [ROOT / p for p in ast.literal_eval(node.value)]
    raise RuntimeError("setup.py has no COMPILED list")


def module_name(source: Path) -> str:
    """`gateway/masking/detectors.py` → `gateway.masking.detectors`."""
    return ".".join(source.relative_to(ROOT).with_suffix("").parts)


def _extension(source: Path) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        ext = source.with_name(source.stem + suffix)
        if ext.exists():
            return ext
    return None


def compiled_modules() -> list[Path]:
    """The extension modules built next to the compiled sources."""
    return [ext for s in sources() if (ext := _extension(s)) is not None]


def stale() -> list[str]:
    """Sources (relative paths) edited since their module was compiled."""
    out = []
    for source in sources():
        ext = _extension(source)
        if ext is not None and source.stat().st_mtime > ext.stat().st_mtime:
            out.append(str(source.relative_to(ROOT)))
    return out


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' .py files before the path finder finds their extensions."""

    def __init__(self, names: dict[str, Path]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.names.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def prefer_source() -> None:
    """From now on, import the compiled modules from their Python source."""
    names = {module_name(s): s for s in sources()}
    early = sorted(n for n in names if n in sys.modules)
    if early:
        raise RuntimeError(f"{', '.join(early)} imported before prefer_source()")
    sys.meta_path.insert(0, _SourceFirst(names))
