"""Routes, failover and the response cache through the gateway, driven by the official SDKs
against the fake providers (each test's routes have their own aliases and deployments, so the
health learnt in one test never steers another)."""

from __future__ import annotations

import itertools
from typing import Any

import anthropic
import openai
import orjson
import pytest

from appliance.store import transaction, utcnow
from gateway.catalog import bump_version
from gateway.governance import store as governance
from gateway.pricing import store as pricing
from gateway.tenancy import store as tenancy
from tests.fakes import Fault
from tests.harness import Stack

USER = [{"role": "user", "content": "Hello"}]
OPENAI = ("fake-openai", "gpt-4o-mini")
ANTHROPIC = ("fake-anthropic", "claude-sonnet-4-5")
GEMINI = ("fake-gemini", "gemini-2.5-flash")
_n = itertools.count()


def add_route(
    stack: Stack,
    deployments: list[tuple[str, str]],
    *,
    strategy: str = "priority",
    fallback: str | None = None,
    tiers: list[dict[str, Any]] | None = None,
    windows: list[int | None] | None = None,
) -> str:
    """A route with fresh deployment ids (and context windows), visible to the gateway at once."""
    alias = f"route-{next(_n)}"
    now = utcnow()
    db = stack.db
    with transaction(db):
        db.execute(
            "INSERT INTO routes (alias, strategy, fallback_alias, tiers, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [alias, strategy, fallback, orjson.dumps(tiers or []).decode(), now, now],
        )
        for position, (provider, model) in enumerate(deployments):
            window = windows[position] if windows else None
            db.execute(
                "INSERT INTO deployments (id, route, provider, upstream_model, position, "
                "context_window, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [f"dep-{alias}-{position}", alias, provider, model, position, window, now],
            )
        bump_version(db)
    stack.reload()
    return alias


def raw_chat(oai: openai.OpenAI, model: str, **kw: Any) -> Any:
    return oai.chat.completions.with_raw_response.create(model=model, messages=USER, **kw)


@pytest.mark.parametrize(
    ("fault", "stream"),
    [
        (Fault("status", status=500), False),
        (Fault("status", status=503), True),
        (Fault("status", status=429, retry_after="7"), False),
        (Fault("reset"), False),
        (Fault("malformed"), False),
        (Fault("garbage_stream"), False),
        (Fault("hang", seconds=3), False),  # past the stack's 2 s first-byte timeout
    ],
    ids=["500", "503-stream", "429", "reset", "malformed", "garbage", "timeout"],
)
def test_a_failing_deployment_fails_over_before_the_first_byte(
    stack: Stack, oai: openai.OpenAI, fault: Fault, stream: bool
) -> None:
    alias = add_route(stack, [OPENAI, ANTHROPIC])
    stack.fakes["openai"].inject(fault)
    if stream:
        with oai.chat.completions.with_streaming_response.create(
            model=alias, messages=USER, stream=True
        ) as resp:
            text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
            headers = resp.headers
    else:
        raw = raw_chat(oai, alias)
        text = raw.parse().choices[0].message.content or ""
        headers = raw.headers
    assert "fake-anthropic" in text  # the backup answered
    assert headers["x-aigw-deployment"] == "fake-anthropic/claude-sonnet-4-5"
    assert "after:" in headers["x-aigw-route-reason"]
    [row] = stack.usage_rows(headers["x-request-id"])
    assert (row["attempts"], row["deployment"], row["status"]) == (
        2,
        "fake-anthropic/claude-sonnet-4-5",
        200,
    )
    assert row["route_reason"].startswith("priority #2") or "after:" in row["route_reason"]


def test_a_refusal_of_the_request_itself_is_not_failed_over(
    stack: Stack, oai: openai.OpenAI
) -> None:
    alias = add_route(stack, [OPENAI, ANTHROPIC])
    backup = stack.fakes["anthropic"]
    before = len(backup.requests)
    stack.fakes["openai"].inject(Fault("status", status=400, message="bad temperature"))
    with pytest.raises(openai.BadRequestError):
        raw_chat(oai, alias)
    assert len(backup.requests) == before  # another deployment would refuse it too


def test_every_deployment_failing_gives_the_last_error(stack: Stack, oai: openai.OpenAI) -> None:
    alias = add_route(stack, [OPENAI, GEMINI])
    stack.fakes["openai"].inject(Fault("status", status=500))
    stack.fakes["gemini"].inject(Fault("status", status=503))
    with pytest.raises(openai.APIStatusError) as exc:
        raw_chat(oai, alias)
    assert exc.value.status_code == 503


def test_an_open_circuit_is_skipped_and_the_fallback_alias_answers(
    stack: Stack, oai: openai.OpenAI
) -> None:
    backup = add_route(stack, [GEMINI])
    alias = add_route(stack, [OPENAI], fallback=backup)
    stack.fakes["openai"].inject(Fault("status", status=500, times=5))
    for _ in range(5):  # five consecutive failures open the circuit
        with pytest.raises(openai.InternalServerError):
            raw_chat(oai, alias)
    raw = raw_chat(oai, alias)
    assert raw.headers["x-aigw-degraded"] == "true"
    assert raw.headers["x-aigw-deployment"] == "fake-gemini/gemini-2.5-flash"
    assert "gemini" in (raw.parse().choices[0].message.content or "").lower()


def test_tiers_route_by_hint_and_say_why(stack: Stack, oai: openai.OpenAI) -> None:
    alias = add_route(
        stack,
        [OPENAI, ANTHROPIC],
        tiers=[{"name": "hard", "when": {"hint": "hard"}, "use": [1]}],
    )
    raw = raw_chat(oai, alias, extra_headers={"x-aigw-route-hint": "hard"})
    assert raw.headers["x-aigw-deployment"] == "fake-anthropic/claude-sonnet-4-5"
    assert "tier 'hard'" in raw.headers["x-aigw-route-reason"]
    raw = raw_chat(oai, alias)
    assert raw.headers["x-aigw-deployment"] == "fake-openai/gpt-4o-mini"


def _conversation(turns: int, words: int) -> list[dict[str, Any]]:
    """A system message, then `turns` user/assistant exchanges of `words` words each, then
    a short last question."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "You are terse."}]
    for i in range(turns):
        msgs.append({"role": "user", "content": f"question {i} " + "word " * words})
        msgs.append({"role": "assistant", "content": f"answer {i} " + "word " * words})
    msgs.append({"role": "user", "content": "And now?"})
    return msgs


def test_a_prompt_goes_only_where_it_fits(stack: Stack, oai: openai.OpenAI) -> None:
    alias = add_route(stack, [OPENAI, ANTHROPIC], windows=[100, 2000])
    messages: Any = _conversation(2, 100)  # ~420 tokens
    raw = oai.chat.completions.with_raw_response.create(model=alias, messages=messages)
    assert raw.headers["x-aigw-deployment"] == "fake-anthropic/claude-sonnet-4-5"
    assert "context too small" in raw.headers["x-aigw-route-reason"]
    short = raw_chat(oai, alias)
    assert short.headers["x-aigw-deployment"] == "fake-openai/gpt-4o-mini"


def test_a_single_deployment_route_refuses_what_does_not_fit(
    stack: Stack, oai: openai.OpenAI
) -> None:
    alias = add_route(stack, [OPENAI], windows=[100])
    sent = len(stack.fakes["openai"].requests)
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model=alias, messages=_conversation(2, 100))  # type: ignore[arg-type]
    assert exc.value.code == "no_deployment_fits"
    assert "context too small" in exc.value.message
    assert len(stack.fakes["openai"].requests) == sent  # nothing went upstream


def test_a_project_that_trims_gets_its_oldest_turns_dropped(stack: Stack) -> None:
    project = f"trim-{next(_n)}"
    tenancy.create_project(stack.db, "test", name=project, department="eng")
    _, secret = stack.new_key("trimmer", project=project)
    sdk = openai.OpenAI(base_url=stack.url + "/v1", api_key=secret, max_retries=0)
    alias = add_route(stack, [OPENAI], windows=[300])
    messages = _conversation(4, 40)  # ~8 messages of ~45 tokens: too long for 300
    with pytest.raises(openai.BadRequestError):  # trimming is off by default
        sdk.chat.completions.create(model=alias, messages=messages, max_tokens=20)  # type: ignore[arg-type]
    tenancy.update_project(stack.db, "test", project, {"context_trim": True})
    stack.reload()
    raw = sdk.chat.completions.with_raw_response.create(
        model=alias,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=20,
    )
    assert raw.parse().choices[0].message.content
    reason = raw.headers["x-aigw-route-reason"]
    assert "context trimmed" in reason and "fit 300 tokens" in reason
    sent = stack.fakes["openai"].requests[-1].body["messages"]
    assert sent[0] == messages[0]  # the system message stays
    assert sent[-1] == messages[-1]  # so does the last turn
    assert 1 < len(sent) < len(messages)
    assert sent == [messages[0], *messages[len(messages) - len(sent) + 1 :]]  # oldest went
    assert sent[1]["role"] == "user"  # a turn starts with the user
    [row] = stack.usage_rows(raw.headers["x-request-id"])
    assert "context trimmed" in row["route_reason"]
    # The Anthropic Messages API trims the same way (its system prompt is not a message).
    claude = anthropic.Anthropic(base_url=stack.url, api_key=secret, max_retries=0)
    answer = claude.messages.with_raw_response.create(
        model=alias,
        system="You are terse.",
        messages=messages[1:],
        max_tokens=20,  # type: ignore[arg-type]
    )
    assert "context trimmed" in answer.headers["x-aigw-route-reason"]
    upstream = stack.fakes["openai"].requests[-1].body["messages"]
    assert upstream[-1]["content"] == messages[-1]["content"] and len(upstream) < len(messages)
    # A last turn that alone does not fit is refused, not cut.
    huge = [messages[0], {"role": "user", "content": "word " * 400}]
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model=alias, messages=huge, max_tokens=20)  # type: ignore[arg-type]
    assert exc.value.code == "no_deployment_fits"


def test_the_reservation_follows_the_failover(stack: Stack) -> None:
    project = f"route-budget-{next(_n)}"
    tenancy.create_project(stack.db, "test", name=project, department="eng")
    _, secret = stack.new_key("route-budget", project=project)
    for provider, model in (OPENAI, ANTHROPIC):
        pricing.set_price(
            stack.db, "test", provider=provider, model=model, input_micros=1_000_000,
            output_micros=1_000_000, currency="USD", box_currency="USD",
        )  # fmt: skip
    governance.create_budget(
        stack.db, "test", level="project", target=project, period="monthly", limit_micros=10**6
    )
    alias = add_route(stack, [OPENAI, ANTHROPIC])
    try:
        stack.fakes["openai"].inject(Fault("status", status=500))
        sdk = openai.OpenAI(base_url=stack.url + "/v1", api_key=secret, max_retries=0)
        raw = raw_chat(sdk, alias, max_tokens=50)
        usage = raw.parse().usage
        assert usage is not None
        [row] = stack.usage_rows(raw.headers["x-request-id"])
        assert row["cost_micros"] == usage.prompt_tokens + usage.completion_tokens
        status = stack.gateway.governance.budgets.status()  # type: ignore[union-attr]
        [mine] = [b for b in status if b["target"] == project]
        assert (mine["reserved_micros"], mine["spent_micros"]) == (0, row["cost_micros"])
    finally:
        for provider, model in (OPENAI, ANTHROPIC):
            pricing.remove_price(stack.db, "test", provider=provider, model=model)
        stack.reload()


def test_a_deterministic_request_is_answered_from_the_cache(
    stack: Stack, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    prompt = [{"role": "user", "content": f"cache me {next(_n)}"}]
    fake = stack.fakes["openai"]
    before = len(fake.requests)
    first = oai.chat.completions.with_raw_response.create(
        model="oa", messages=prompt, temperature=0
    )
    second = oai.chat.completions.with_raw_response.create(
        model="oa", messages=prompt, temperature=0
    )
    assert first.headers["x-aigw-cache"] == "miss" and second.headers["x-aigw-cache"] == "hit"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert len(fake.requests) == before + 1  # the provider saw one request
    [row] = stack.usage_rows(second.headers["x-request-id"])
    assert (row["cache_hit"], row["cost_micros"], row["deployment"]) == (1, 0, "cache")
    # The same answer replayed as a stream.
    chunks = list(
        oai.chat.completions.create(model="oa", messages=prompt, temperature=0, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == first.parse().choices[0].message.content
    assert len(fake.requests) == before + 1
    # no-store: neither served from the cache nor kept.
    third = oai.chat.completions.with_raw_response.create(
        model="oa", messages=prompt, temperature=0, extra_headers={"x-aigw-cache": "no-store"}
    )
    assert third.headers["x-aigw-cache"] == "miss" and len(fake.requests) == before + 2


def test_the_cache_is_scoped_per_project(stack: Stack, oai: openai.OpenAI) -> None:
    prompt = [{"role": "user", "content": f"scoped {next(_n)}"}]
    project = f"other-{next(_n)}"
    tenancy.create_project(stack.db, "test", name=project, department="eng")
    _, secret = stack.new_key("other-project", project=project)
    stack.reload()
    oai.chat.completions.create(model="oa", messages=prompt, temperature=0)
    other = openai.OpenAI(base_url=stack.url + "/v1", api_key=secret, max_retries=0)
    raw = other.chat.completions.with_raw_response.create(
        model="oa", messages=prompt, temperature=0
    )
    assert raw.headers["x-aigw-cache"] == "miss"


def test_sampled_requests_are_not_cached_unless_asked(stack: Stack, oai: openai.OpenAI) -> None:
    prompt = [{"role": "user", "content": f"sampled {next(_n)}"}]
    raw_chat(oai, "oa")
    for _ in range(2):
        raw = oai.chat.completions.with_raw_response.create(model="oa", messages=prompt)
        assert raw.headers["x-aigw-cache"] == "miss"
    on = {"x-aigw-cache": "on"}
    oai.chat.completions.create(model="oa", messages=prompt, extra_headers=on)
    raw = oai.chat.completions.with_raw_response.create(
        model="oa", messages=prompt, extra_headers=on
    )
    assert raw.headers["x-aigw-cache"] == "hit"
