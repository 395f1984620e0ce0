"""Build the masking engine's modules as C extensions with mypyc; everything else is pyproject.

The detectors run over every prompt of a project with masking rules, and their per-value work
(match, check digits, placeholder) is Python-level code that mypyc, from the same typed source,
runs about 1.35x faster (`python -m bench.masking`); a streamed answer's placeholders are put
back about 1.5x faster. mypyc is part of mypy: a build requirement, nothing at run time. Where
no C compiler is at hand, or with AIGW_NO_COMPILE=1, the modules stay plain Python with the
same behaviour (the extensions are optional).
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext


class _BuildAlways(build_ext):
    """Compile every time: mypyc leaves a generated C file untouched when an edit does not
    change it, and the compiled module then keeps its old date, which the tests' check for
    stale modules (tests/compiled.py) would take for a source newer than its build."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.force = True


# The masking engine's hot modules, compiled together (they call each other natively).
# Nothing outside them subclasses their classes or patches their attributes.
COMPILED = [
    "gateway/masking/_text.py",
    "gateway/masking/_checksums.py",
    "gateway/masking/_bodies.py",
    "gateway/masking/custom.py",
    "gateway/masking/detectors.py",
    "gateway/masking/policy.py",
    "gateway/masking/restore.py",  # restoring answers, and streams chunk by chunk
    "gateway/masking/sse.py",
]


def _extensions() -> list[Any]:
    if os.environ.get("AIGW_NO_COMPILE"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # a build without the build requirements (setup.py run by hand)
        return []
    try:
        extensions = mypycify(COMPILED, opt_level="3")
    except (Exception, SystemExit) as exc:  # a mypy release that refuses the code: stay Python
        print(f"setup.py: not compiling the masking engine ({exc!r}); it stays pure Python")
        return []
    for ext in extensions:
        ext.optional = True  # no compiler: install the pure-Python modules instead
    return extensions


setup(ext_modules=_extensions(), cmdclass={"build_ext": _BuildAlways})
