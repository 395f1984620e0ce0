"""Shared fixtures: one gateway + fake providers stack per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import anthropic
import openai
import pytest

from gateway.auth import FailureThrottle
from tests import compiled
from tests.harness import Stack


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test compiled modules older than their source (the tests would run the old
    code)."""
    stale = compiled.stale()
    if stale and not os.environ.get("AIGW_PURE_PYTHON"):
        raise pytest.UsageError(
            f"{', '.join(stale)} changed after the compiled modules were built: "
            "run `make install` (or `pip install -e .`) to rebuild them, or set "
            "AIGW_PURE_PYTHON=1 to test the Python source"
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The shared stack; tests must leave no fault queued behind."""
    s = Stack(tmp_path_factory.mktemp("aigw-state")).start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _no_leftover_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "stack" in request.fixturenames:
        s: Stack = request.getfixturevalue("stack")
        for fake in s.fakes.values():
            fake.clear_faults()
            fake.cached_tokens = 0
        if s.gateway is not None:  # tests that fail auth on purpose must not slow the next
            s.gateway.auth_failures = FailureThrottle()


@pytest.fixture
def oai(stack: Stack) -> openai.OpenAI:
    """The official OpenAI SDK pointed at the gateway, without retries."""
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.key, max_retries=0)


@pytest.fixture
def ant(stack: Stack) -> anthropic.Anthropic:
    """The official Anthropic SDK pointed at the gateway, without retries."""
    return anthropic.Anthropic(base_url=stack.url, api_key=stack.key, max_retries=0)
