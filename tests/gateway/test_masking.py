"""Masking through the gateway with the official SDKs and the fake providers: what leaves the
box carries placeholders, what the client gets back carries its own values, whole and
streamed, translated or not; redact, block, trusted-only routing and the cache."""

from __future__ import annotations

import itertools
from typing import Any

import anthropic
import openai
import orjson
import pytest

from appliance.store import transaction, utcnow
from gateway.catalog import bump_version
from gateway.masking import store as masking
from gateway.tenancy import store as tenancy
from tests.harness import Stack

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
SECRET = "sk-proj-" + "Ab3dE" * 8
_n = itertools.count()


def _project(stack: Stack, rules: dict[str, str], **settings: Any) -> str:
    """A project with masking rules (and settings), and a key in it; returns the secret."""
    name = f"masked-{next(_n)}"
    tenancy.create_project(stack.db, "test", name=name, department="eng")
    for detector, action in rules.items():
        words = ["falcon"] if detector.startswith("custom:") else None
        masking.set_rule(stack.db, "test", name, detector, action, words=words)
    if settings:
        tenancy.update_project(stack.db, "test", name, settings)
    _, secret = stack.new_key(f"key-{name}", project=name)
    stack.reload()
    return secret


def _oai(stack: Stack, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=secret, max_retries=0)


def _sent(stack: Stack, fake: str = "openai") -> str:
    """What the fake provider received last, as text."""
    return orjson.dumps(stack.fakes[fake].requests[-1].body).decode()


@pytest.fixture
def masked(stack: Stack) -> str:
    return _project(stack, {"email": "mask", "card": "redact", "secret": "block",
                            "custom:codenames": "mask"})  # fmt: skip


def test_a_masked_value_never_leaves_and_comes_back(stack: Stack, masked: str) -> None:
    sdk = _oai(stack, masked)
    raw = sdk.chat.completions.with_raw_response.create(
        model="oa", messages=[{"role": "user", "content": f"Mail {EMAIL} about falcon"}]
    )
    sent = _sent(stack)
    assert EMAIL not in sent and "falcon" not in sent
    assert "[EMAIL_1]" in sent and "[CUSTOM_CODENAMES_1]" in sent
    answer = raw.parse().choices[0].message.content
    assert answer is not None and f"Mail {EMAIL} about falcon" in answer
    [row] = stack.usage_rows(raw.headers["x-request-id"])
    assert row["detectors"] == "custom:codenames,email"


def test_a_stream_gets_its_values_back(stack: Stack, masked: str) -> None:
    sdk = _oai(stack, masked)
    stream = sdk.chat.completions.create(
        model="oa", messages=[{"role": "user", "content": f"Mail {EMAIL} now"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert f"Mail {EMAIL} now" in text and "[EMAIL" not in text
    assert EMAIL not in _sent(stack)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_arguments_get_their_values_back(stack: Stack, masked: str, stream: bool) -> None:
    """The fake answers with a tool call whose JSON arguments repeat the prompt, in small
    fragments when streamed: a placeholder is split across fragments."""
    sdk = _oai(stack, masked)
    tools: Any = [{"type": "function", "function": {"name": "send", "parameters": {}}}]
    messages: Any = [{"role": "user", "content": f'Send "{EMAIL}"'}]
    if stream:
        chunks = sdk.chat.completions.create(
            model="oa", messages=messages, tools=tools, stream=True
        )
        args = "".join(
            tc.function.arguments or ""
            for c in chunks
            if c.choices
            for tc in c.choices[0].delta.tool_calls or ()
            if tc.function
        )
    else:
        msg = sdk.chat.completions.create(model="oa", messages=messages, tools=tools)
        calls = msg.choices[0].message.tool_calls or []
        args = calls[0].function.arguments  # type: ignore[union-attr]
    assert orjson.loads(args) == {"query": f'Send "{EMAIL}"'}


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_clients_get_their_values_back_across_a_translation(
    stack: Stack, masked: str, stream: bool
) -> None:
    claude = anthropic.Anthropic(base_url=stack.url, api_key=masked, max_retries=0)
    kw: Any = {
        "model": "oa",  # an OpenAI upstream: the answer is translated back
        "max_tokens": 100,
        "system": f"Reply to {EMAIL}.",
        "messages": [{"role": "user", "content": f"Hi, I am {EMAIL}"}],
    }
    if stream:
        with claude.messages.stream(**kw) as s:
            text = s.get_final_text()
    else:
        block = claude.messages.create(**kw).content[0]
        text = block.text  # type: ignore[union-attr]
    assert f"I am {EMAIL}" in text
    assert EMAIL not in _sent(stack)


def test_redacted_values_are_gone_for_good(stack: Stack, masked: str) -> None:
    sdk = _oai(stack, masked)
    msg = sdk.chat.completions.create(
        model="oa", messages=[{"role": "user", "content": f"Card {CARD} please"}]
    )
    assert "[REDACTED_CARD]" in _sent(stack) and "4111" not in _sent(stack)
    assert "[REDACTED_CARD]" in (msg.choices[0].message.content or "")


@pytest.mark.parametrize("client", ["openai", "anthropic"])
def test_a_blocked_request_is_refused_without_echoing_it(
    stack: Stack, masked: str, client: str
) -> None:
    before = len(stack.fakes["openai"].requests)
    prompt = f"my key is {SECRET}"
    if client == "openai":
        with pytest.raises(openai.BadRequestError) as exc:
            _oai(stack, masked).chat.completions.create(
                model="oa", messages=[{"role": "user", "content": prompt}]
            )
        err: Any = exc.value
        assert err.code == "sensitive_data_blocked"
    else:
        claude = anthropic.Anthropic(base_url=stack.url, api_key=masked, max_retries=0)
        with pytest.raises(anthropic.BadRequestError) as aexc:
            claude.messages.create(
                model="oa", max_tokens=10, messages=[{"role": "user", "content": prompt}]
            )
        err = aexc.value
    assert "'secret'" in err.message and SECRET not in str(err.body) and SECRET not in err.message
    assert len(stack.fakes["openai"].requests) == before  # nothing left the box
    row = stack.usage_rows()[-1]
    assert (row["status"], row["error"], row["detectors"]) == (
        400,
        "sensitive_data_blocked",
        "secret",
    )


def test_a_clean_prompt_is_untouched(stack: Stack, masked: str) -> None:
    _oai(stack, masked).chat.completions.create(
        model="oa", messages=[{"role": "user", "content": "nothing to see"}]
    )
    assert stack.fakes["openai"].requests[-1].body["messages"][0]["content"] == "nothing to see"
    assert stack.usage_rows()[-1]["detectors"] is None


def _trusted_route(stack: Stack) -> str:
    """A route whose first deployment is not trusted with confidential data, its second is."""
    alias = f"mask-route-{next(_n)}"
    now = utcnow()
    with transaction(stack.db):
        stack.db.execute(
            "INSERT INTO routes (alias, strategy, created_at, updated_at) VALUES (?, ?, ?, ?)",
            [alias, "priority", now, now],
        )
        for position, (provider, model, trusted) in enumerate(
            [("fake-openai", "gpt-4o-mini", 0), ("fake-anthropic", "claude-sonnet-4-5", 1)]
        ):
            stack.db.execute(
                "INSERT INTO deployments (id, route, provider, upstream_model, position, "
                "confidential, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [f"dep-{alias}-{position}", alias, provider, model, position, trusted, now],
            )
        bump_version(stack.db)
    stack.reload()
    return alias


def test_sensitive_requests_go_only_to_trusted_deployments(stack: Stack) -> None:
    secret = _project(stack, {"email": "allow"}, sensitive_to_trusted=True)
    sdk = _oai(stack, secret)
    alias = _trusted_route(stack)
    raw = sdk.chat.completions.with_raw_response.create(
        model=alias, messages=[{"role": "user", "content": f"about {EMAIL}"}]
    )
    assert raw.headers["x-aigw-deployment"] == "fake-anthropic/claude-sonnet-4-5"
    assert "not trusted with confidential data" in raw.headers["x-aigw-route-reason"]
    assert EMAIL in _sent(stack, "anthropic")  # allowed: reported, not changed
    clean = sdk.chat.completions.with_raw_response.create(
        model=alias, messages=[{"role": "user", "content": "hello"}]
    )
    assert clean.headers["x-aigw-deployment"] == "fake-openai/gpt-4o-mini"
    # A plain model alias has no trusted deployment: refused, nothing sent.
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="oa", messages=[{"role": "user", "content": EMAIL}])
    assert exc.value.code == "no_deployment_fits"


def test_a_cached_answer_carries_each_callers_own_values(stack: Stack) -> None:
    secret = _project(stack, {"email": "mask"})
    sdk = _oai(stack, secret)
    first = sdk.chat.completions.with_raw_response.create(
        model="oa", temperature=0, messages=[{"role": "user", "content": "Write a@example.com"}]
    )
    second = sdk.chat.completions.with_raw_response.create(
        model="oa", temperature=0, messages=[{"role": "user", "content": "Write b@example.com"}]
    )
    assert first.headers["x-aigw-cache"] == "miss" and second.headers["x-aigw-cache"] == "hit"
    assert "a@example.com" in (first.parse().choices[0].message.content or "")
    text = second.parse().choices[0].message.content or ""
    assert "b@example.com" in text and "a@example.com" not in text
    stream = sdk.chat.completions.create(
        model="oa",
        temperature=0,
        stream=True,
        messages=[{"role": "user", "content": "Write c@example.com"}],
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "c@example.com" in streamed and "[EMAIL" not in streamed
