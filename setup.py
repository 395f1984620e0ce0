"""Build the hot path's plain-Python modules as C extensions with mypyc; the rest is pyproject.

- The masking engine: the detectors run over every prompt of a project with masking rules, and
  their per-value work (match, check digits, placeholder) is Python-level code that mypyc, from
  the same typed source, runs 1.35-2.1x faster (`python -m bench.masking`, two development
  VMs); a streamed answer's placeholders are put back 1.5-2.5x faster.
- Budgets, rate limits, the spend breaker and prices: a governed request runs them before and
  after its call; compiled, they cost about 40k fewer instructions per request
  (`python -m bench.instructions`, aigw-gov against aigw).
- Routing: the plan and the deployments' health; about 13k fewer per routed request.
- The request path of every call: the upstream HTTP client (a parser callback per header and
  body piece), the stream decoders and the ledger's hash chain; about 85k fewer instructions
  per stream (823k to 738k) and 37k fewer per plain request (608k to 571k).

mypyc is part of mypy: a build requirement, nothing at run time. Where no C compiler is at
hand, or with AIGW_NO_COMPILE=1, the modules stay plain Python with the same behaviour (the
extensions are optional). tests/test_build.py runs their tests on both builds.
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


# Compiled together (they call each other natively). Nothing outside them subclasses their
# classes or patches their attributes. The Makefile and tests/compiled.py read this list.
COMPILED = [
    "gateway/masking/_text.py",
    "gateway/masking/_checksums.py",
    "gateway/masking/_bodies.py",
    "gateway/masking/custom.py",
    "gateway/masking/detectors.py",
    "gateway/masking/policy.py",
    "gateway/masking/restore.py",  # restoring answers, and streams chunk by chunk
    "gateway/masking/sse.py",
    # Budgets, rate limits and the spend breaker: every governed request runs them twice
    "gateway/governance/ratelimit.py",
    "gateway/governance/budgets.py",
    "gateway/governance/breaker.py",
    "gateway/governance/periods.py",
    "gateway/pricing/book.py",
    "gateway/tokens.py",
    # Routing: the plan and the deployments' health, per routed request
    "gateway/routing/health.py",
    "gateway/routing/router.py",
    "gateway/routing/features.py",
    "gateway/routing/model.py",
    # The request path of every call: the upstream client, the stream decoders, the ledger chain
    "gateway/providers/http.py",
    "gateway/streaming.py",
    "gateway/ledger/chain.py",
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
        print(f"setup.py: not compiling the hot modules ({exc!r}); they stay pure Python")
        return []
    for ext in extensions:
        ext.optional = True  # no compiler: install the pure-Python modules instead
    return extensions


setup(ext_modules=_extensions(), cmdclass={"build_ext": _BuildAlways})
