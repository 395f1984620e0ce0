"""Cost governance through the gateway, driven by the official SDKs: prices in the ledger,
hard budgets under concurrency, rate limits and their headers, unpriced models.

Each test works in a project of its own so budgets and limits never touch other tests.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import openai
import pytest

from gateway.governance import store as governance
from gateway.pricing import store as pricing
from gateway.tenancy import store as tenancy
from tests.fakes import Fault
from tests.harness import Stack

USER = [{"role": "user", "content": "Hello"}]
_projects = itertools.count()


def project(stack: Stack, **changes: Any) -> str:
    """A fresh project in department eng."""
    name = f"gov-{next(_projects)}"
    tenancy.create_project(stack.db, "test", name=name, department="eng")
    if changes:
        tenancy.update_project(stack.db, "test", name, changes)
    return name


def client(stack: Stack, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=secret, max_retries=0)


def price(stack: Stack, *, input_micros: int, output_micros: int, request_micros: int = 0) -> None:
    """Price the OpenAI fake's gpt-4o-mini (micro-units per million tokens, and per request)."""
    pricing.set_price(
        stack.db,
        "test",
        provider="fake-openai",
        model="gpt-4o-mini",
        input_micros=input_micros,
        output_micros=output_micros,
        request_micros=request_micros,
        currency="USD",
        box_currency="USD",
    )


@pytest.fixture
def priced(stack: Stack) -> Any:
    """gpt-4o-mini at 0 per input token and exactly 1 micro-unit per output token."""
    price(stack, input_micros=0, output_micros=1_000_000)
    stack.reload()
    yield
    pricing.remove_price(stack.db, "test", provider="fake-openai", model="gpt-4o-mini")
    stack.reload()


def test_the_ledger_records_each_request_at_its_price(stack: Stack) -> None:
    name = project(stack)
    _, secret = stack.new_key("priced", project=name)
    price(stack, input_micros=2_000_000, output_micros=8_000_000)
    stack.reload()
    try:
        raw = client(stack, secret).chat.completions.with_raw_response.create(
            model="oa", messages=USER
        )
        usage = raw.parse().usage
        assert usage is not None
        [row] = stack.usage_rows(raw.headers["x-request-id"])
        expected = usage.prompt_tokens * 2 + usage.completion_tokens * 8
        assert (row["cost_micros"], row["priced"]) == (expected, 1)
        # A new price takes effect without a restart.
        price(stack, input_micros=4_000_000, output_micros=8_000_000)
        stack.reload()
        raw = client(stack, secret).chat.completions.with_raw_response.create(
            model="oa", messages=USER
        )
        [row] = stack.usage_rows(raw.headers["x-request-id"])
        assert row["cost_micros"] == expected + usage.prompt_tokens * 2
    finally:
        pricing.remove_price(stack.db, "test", provider="fake-openai", model="gpt-4o-mini")
        stack.reload()


@pytest.fixture
def fee_priced(stack: Stack) -> Any:
    """gpt-4o-mini at a flat 50 micro-units a request: worst case and actual cost are equal,
    so what a budget admits does not depend on when requests settle."""
    price(stack, input_micros=0, output_micros=0, request_micros=50)
    stack.reload()
    yield
    pricing.remove_price(stack.db, "test", provider="fake-openai", model="gpt-4o-mini")
    stack.reload()


def test_a_hard_budget_admits_exactly_what_it_can_pay_for(stack: Stack, fee_priced: None) -> None:
    """64 concurrent requests of 50 micro-units each against a hard limit of 500: exactly 10
    go through, whatever the interleaving."""
    name = project(stack)
    _, secret = stack.new_key("budgeted", project=name)
    governance.create_budget(
        stack.db, "test", level="project", target=name, period="monthly", limit_micros=500
    )
    stack.reload()
    # Admitted requests wait upstream long enough for all 64 to be in flight at once, and well
    # inside the stack's 2 s first-byte timeout: 1 s went past it in a slow spell of a CI VM.
    stack.fakes["openai"].inject(Fault("hang", seconds=0.5, times=64))
    sdk = client(stack, secret)
    start = threading.Barrier(64)
    outcomes: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        start.wait()
        try:
            sdk.chat.completions.create(model="oa", messages=USER, max_tokens=50)
            result = "ok"
        except openai.RateLimitError as exc:
            result = str(exc.code)
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=one) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes.count("ok") == 10
    assert outcomes.count("budget_exceeded") == 54
    status = stack.gateway.governance.budgets.status()  # type: ignore[union-attr]
    [mine] = [b for b in status if b["target"] == name]
    assert (mine["reserved_micros"], mine["spent_micros"]) == (0, 500)


def test_the_refusal_names_the_budget_and_its_reset(stack: Stack, priced: None) -> None:
    name = project(stack)
    _, secret = stack.new_key("small-budget", project=name)
    governance.create_budget(
        stack.db, "test", level="project", target=name, period="daily", limit_micros=10
    )
    stack.reload()
    with pytest.raises(openai.RateLimitError) as exc:
        client(stack, secret).chat.completions.create(model="oa", messages=USER, max_tokens=50)
    err = exc.value
    assert err.code == "budget_exceeded"
    assert f"project {name!r}" in err.message or name in err.message
    assert "reset" in err.message
    assert err.response.headers["retry-after"] and err.response.headers["x-should-retry"] == "true"


def test_rate_limits_refuse_with_retry_after_and_every_answer_carries_the_headers(
    stack: Stack,
) -> None:
    name = project(stack)
    _, secret = stack.new_key("limited", project=name, rpm=3)
    stack.reload()
    sdk = client(stack, secret)
    remaining = []
    for _ in range(3):
        raw = sdk.chat.completions.with_raw_response.create(model="oa", messages=USER)
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-reset-requests"]
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [2, 1, 0]
    with pytest.raises(openai.RateLimitError) as exc:
        sdk.chat.completions.create(model="oa", messages=USER)
    assert exc.value.code == "rate_limited"
    headers = exc.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-remaining-requests"] == "0"
    # Streams carry them too (the headers leave before the first event).
    _, other = stack.new_key("limited-stream", project=name, rpm=100)
    stack.reload()
    with client(stack, other).chat.completions.with_streaming_response.create(
        model="oa", messages=USER, stream=True
    ) as resp:
        assert resp.headers["x-ratelimit-limit-requests"] == "100"


def test_tokens_per_minute_at_project_level(stack: Stack) -> None:
    name = project(stack, tpm=200)
    _, secret = stack.new_key("tpm", project=name)
    stack.reload()
    sdk = client(stack, secret)
    raw = sdk.chat.completions.with_raw_response.create(model="oa", messages=USER, max_tokens=20)
    assert raw.headers["x-ratelimit-limit-tokens"] == "200"
    with pytest.raises(openai.RateLimitError) as exc:
        sdk.chat.completions.create(model="oa", messages=USER, max_tokens=500)
    assert exc.value.code == "rate_limited" and "token" in exc.value.message


def test_an_unpriced_model_is_refused_or_allowed_at_zero_with_an_alert(stack: Stack) -> None:
    refusing = project(stack, unpriced="refuse")
    _, secret = stack.new_key("unpriced-refused", project=refusing)
    allowing = project(stack, unpriced="allow")
    _, other = stack.new_key("unpriced-allowed", project=allowing)
    stack.reload()
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client(stack, secret).chat.completions.create(model="gm", messages=USER)
    assert exc.value.code == "model_not_priced"
    raw = client(stack, other).chat.completions.with_raw_response.create(model="gm", messages=USER)
    [row] = stack.usage_rows(raw.headers["x-request-id"])
    assert (row["cost_micros"], row["priced"]) == (0, 0)
    deadline = time.monotonic() + 5  # the alert sink stores alerts in the background
    while True:
        alerts = list(stack.db.query("SELECT * FROM alerts WHERE kind = 'unpriced_model'"))
        if alerts or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert any("gemini-2.5-flash" in a["message"] for a in alerts)
