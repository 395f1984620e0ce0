"""Content retention through the gateway with the official SDKs and the fake providers: what a
project keeps (nothing, the request's shape, or the full request and answer sealed), how it is
read back (auditors and admins, every read audited), purged, and never stored or logged in
clear."""

from __future__ import annotations

import io
import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import openai
import orjson
import pytest

from appliance import logs
from appliance.store import open_store
from gateway.masking import store as masking
from gateway.retention.purge import purge
from gateway.retention.sealing import KEY_ID
from gateway.tenancy import store as tenancy
from tests.harness import Reply, Stack, request

EMAIL = "jane.doe@example.com"
MARKER = "zebracorn"  # a word from the prompt that must never be stored or logged in clear
_n = itertools.count()


def _project(stack: Stack, mode: str, days: int = 30, mask: bool = True) -> tuple[str, str]:
    """A project keeping `mode` content (masking e-mail addresses), a key in it: (name, key)."""
    name = f"kept-{mode}-{next(_n)}"
    tenancy.create_project(stack.db, "test", name=name, department="eng")
    if mask:
        masking.set_rule(stack.db, "test", name, "email", "mask")
    tenancy.update_project(stack.db, "test", name, {"retention": mode, "retention_days": days})
    _, secret = stack.new_key(f"key-{name}", project=name)
    stack.reload()
    return name, secret


@pytest.fixture(scope="module")
def tokens(stack: Stack) -> dict[str, str]:
    """One admin token per role."""
    return {
        role: tenancy.create_admin_token(stack.db, "test", f"retention-{role}", role)[1]
        for role in ("admin", "auditor", "finance")
    }


def _oai(stack: Stack, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=secret, max_retries=0)


def _claude(stack: Stack, secret: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url, api_key=secret, max_retries=0)


def _rows(stack: Stack, trace_id: str) -> list[dict[str, Any]]:
    db = open_store(stack.cfg.database_path)
    try:
        return list(db.query("SELECT * FROM contents WHERE trace_id = ?", [trace_id]))
    finally:
        db.conn.close()


def _read(stack: Stack, trace_id: str, token: str) -> Reply:
    path = f"/admin/v1/audit/requests/{trace_id}/content"
    return request(stack, "GET", path, headers={"Authorization": f"Bearer {token}"})


def _reads(stack: Stack, trace_id: str) -> list[dict[str, Any]]:
    """The `content.read` audit records of a trace id, oldest first."""
    db = open_store(stack.cfg.database_path)
    try:
        return list(
            db.query(
                "SELECT * FROM audit WHERE action = 'content.read' AND object_id = ? ORDER BY id",
                [trace_id],
            )
        )
    finally:
        db.conn.close()


def _prompt() -> str:
    return f"Please write to {EMAIL} about the {MARKER} project"


def _assert_sealed(rows: list[dict[str, Any]]) -> None:
    [row] = rows
    assert (row["kind"], row["sealed_with"]) == ("full", KEY_ID)
    body = bytes(row["body"])
    for secret in (MARKER, EMAIL, "Please write"):
        assert secret.encode() not in body
    assert row["purge_after"] > row["ts"]


# --- full ---------------------------------------------------------------------------------


def test_full_keeps_the_original_prompt_and_the_restored_answer_sealed(
    stack: Stack, tokens: dict[str, str]
) -> None:
    _, secret = _project(stack, "full")
    raw = _oai(stack, secret).chat.completions.with_raw_response.create(
        model="oa", messages=[{"role": "user", "content": _prompt()}], temperature=0.2
    )
    trace = raw.headers["x-request-id"]
    assert EMAIL not in str(stack.fakes["openai"].requests[-1].body)  # masked upstream
    _assert_sealed(_rows(stack, trace))

    reply = _read(stack, trace, tokens["admin"])
    assert reply.status_code == 200, reply.content
    got = reply.json()
    assert (got["trace_id"], got["kind"], got["records"]) == (trace, "full", 1)
    content = got["content"]
    assert content["request"]["messages"][0]["content"] == _prompt()  # the original, unmasked
    answer = content["response"]["choices"][0]["message"]["content"]
    assert EMAIL in answer and "[EMAIL" not in answer
    assert answer == raw.parse().choices[0].message.content
    assert content["metadata"]["detectors"] == ["email"]

    [audit] = _reads(stack, trace)
    assert audit["actor"].startswith("token:") and audit["object_type"] == "request"
    assert MARKER not in audit["after"] and EMAIL not in audit["after"]
    assert '"outcome":"ok"' in audit["after"]


def test_full_keeps_a_streamed_answer_as_the_client_received_it(
    stack: Stack, tokens: dict[str, str]
) -> None:
    _, secret = _project(stack, "full")
    with _oai(stack, secret).chat.completions.with_streaming_response.create(
        model="oa", messages=[{"role": "user", "content": _prompt()}], stream=True
    ) as resp:
        trace = resp.headers["x-request-id"]
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    _assert_sealed(_rows(stack, trace))
    content = _read(stack, trace, tokens["auditor"]).json()["content"]
    assert content["request"]["stream"] is True
    assert content["response"]["choices"][0]["message"]["content"] == text
    assert EMAIL in text


@pytest.mark.parametrize("stream", [False, True])
def test_full_keeps_anthropic_requests_and_answers(
    stack: Stack, tokens: dict[str, str], stream: bool
) -> None:
    _, secret = _project(stack, "full")
    kw: Any = {
        "model": "oa",  # translated both ways
        "max_tokens": 100,
        "system": f"You help {EMAIL}.",
        "messages": [{"role": "user", "content": _prompt()}],
    }
    claude = _claude(stack, secret)
    if stream:
        with claude.messages.with_streaming_response.create(**kw, stream=True) as resp:
            trace = resp.headers["x-request-id"]
            for _ in resp.iter_lines():
                pass
    else:
        raw = claude.messages.with_raw_response.create(**kw)
        trace = raw.headers["x-request-id"]
    _assert_sealed(_rows(stack, trace))
    content = _read(stack, trace, tokens["admin"]).json()["content"]
    assert content["request"]["system"] == f"You help {EMAIL}."
    assert content["response"]["type"] == "message"
    text = content["response"]["content"][0]["text"]
    assert EMAIL in text and "[EMAIL" not in text


def test_a_cache_hit_keeps_the_answer_its_caller_received(
    stack: Stack, tokens: dict[str, str]
) -> None:
    _, secret = _project(stack, "full")
    sdk = _oai(stack, secret)
    messages: Any = [{"role": "user", "content": f"{_prompt()} ({next(_n)})"}]
    first = sdk.chat.completions.with_raw_response.create(
        model="oa", messages=messages, temperature=0
    )
    hit = sdk.chat.completions.with_raw_response.create(
        model="oa", messages=messages, temperature=0
    )
    assert hit.headers["x-aigw-cache"] == "hit"
    trace = hit.headers["x-request-id"]
    _assert_sealed(_rows(stack, trace))
    content = _read(stack, trace, tokens["admin"]).json()["content"]
    answer = content["response"]["choices"][0]["message"]["content"]
    assert answer == first.parse().choices[0].message.content and EMAIL in answer


def test_auditors_read_content_and_finance_may_not(stack: Stack, tokens: dict[str, str]) -> None:
    name, secret = _project(stack, "full")
    raw = _oai(stack, secret).chat.completions.with_raw_response.create(
        model="oa", messages=[{"role": "user", "content": _prompt()}]
    )
    trace = raw.headers["x-request-id"]
    assert _read(stack, trace, tokens["auditor"]).status_code == 200
    refused = _read(stack, trace, tokens["finance"])
    assert refused.status_code == 403 and MARKER.encode() not in refused.content
    # The 403 is the role check's, before any content is looked up: only the read is on record.
    assert [orjson.loads(r["after"]) for r in _reads(stack, trace)] == [
        {"kind": "full", "outcome": "ok", "project": name, "records": 1}
    ]


# --- metadata and none ----------------------------------------------------------------------


def test_metadata_keeps_the_shape_and_no_text(stack: Stack, tokens: dict[str, str]) -> None:
    name, secret = _project(stack, "metadata")
    tools: Any = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    raw = _oai(stack, secret).chat.completions.with_raw_response.create(
        model="oa",
        messages=[
            {"role": "system", "content": f"Know {MARKER}."},
            {"role": "user", "content": _prompt()},
        ],
        temperature=0.5,
        max_tokens=50,
        tools=tools,
        stop=[MARKER],
        response_format={"type": "json_object"},
    )
    trace = raw.headers["x-request-id"]
    [row] = _rows(stack, trace)
    assert (row["kind"], row["sealed_with"], row["project"]) == ("metadata", None, name)
    body = bytes(row["body"])
    assert MARKER.encode() not in body and EMAIL.encode() not in body

    got = _read(stack, trace, tokens["auditor"]).json()
    meta = got["content"]
    assert got["kind"] == "metadata"
    assert meta["roles"] == ["system", "user"] and meta["messages"] == 2
    assert meta["prompt_chars"] == len(f"Know {MARKER}.") + len(_prompt())
    params = meta["parameters"]
    assert params["temperature"] == 0.5 and params["max_tokens"] == 50
    assert params["tools"] == ["lookup"] and params["stop"] == 1
    assert params["response_format"] == "json_object"
    assert meta["detectors"] == ["email"] and meta["status"] == 200
    assert meta["usage"]["output_tokens"] > 0


def test_none_keeps_nothing(stack: Stack, tokens: dict[str, str]) -> None:
    _, secret = _project(stack, "none")
    raw = _oai(stack, secret).chat.completions.with_raw_response.create(
        model="oa", messages=[{"role": "user", "content": _prompt()}]
    )
    trace = raw.headers["x-request-id"]
    assert _rows(stack, trace) == []
    reply = _read(stack, trace, tokens["admin"])
    assert reply.status_code == 404
    assert reply.json()["error"]["details"] == {"reason": "not_kept"}
    [audit] = _reads(stack, trace)
    assert '"outcome":"not_kept"' in audit["after"]


def test_an_unknown_trace_id_is_a_404_and_is_audited(stack: Stack, tokens: dict[str, str]) -> None:
    reply = _read(stack, "no-such-trace", tokens["auditor"])
    assert reply.status_code == 404 and reply.json()["error"]["details"]["reason"] == "unknown"
    assert len(_reads(stack, "no-such-trace")) == 1


# --- purge --------------------------------------------------------------------------------


def test_content_is_purged_after_its_period(stack: Stack, tokens: dict[str, str]) -> None:
    _, secret = _project(stack, "full", days=1)
    sdk = _oai(stack, secret)
    raw = sdk.chat.completions.with_raw_response.create(
        model="oa", messages=[{"role": "user", "content": _prompt()}]
    )
    trace = raw.headers["x-request-id"]
    db = open_store(stack.cfg.database_path)
    try:
        purge(db, datetime.now(UTC) + timedelta(hours=23))
        assert _rows(stack, trace)  # not yet due
        assert purge(db, datetime.now(UTC) + timedelta(days=1, minutes=1)) >= 1
        [audit] = db.query(
            "SELECT * FROM audit WHERE action = 'contents.purge' ORDER BY id DESC LIMIT 1"
        )
    finally:
        db.conn.close()
    assert _rows(stack, trace) == []
    assert audit["actor"] == "system:retention" and '"deleted":' in audit["after"]
    reply = _read(stack, trace, tokens["admin"])
    assert reply.status_code == 404
    assert reply.json()["error"]["details"] == {"reason": "purged"}


# --- the vault ----------------------------------------------------------------------------


@contextmanager
def _sealed(stack: Stack) -> Iterator[None]:
    """The vault sealed meanwhile (the gateway holds the same Vault object)."""
    stack.vault.seal()
    try:
        yield
    finally:
        stack.vault.unseal()
        stack.reload()


def test_a_sealed_vault_stores_no_full_content_and_reads_get_503(
    stack: Stack, tokens: dict[str, str]
) -> None:
    _, secret = _project(stack, "full")
    claude = _claude(stack, secret)
    kw: Any = {"model": "an", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    kept = claude.messages.with_raw_response.create(**kw).headers["x-request-id"]
    assert stack.gateway is not None
    retainer = stack.gateway.retainer
    dropped = retainer.dropped
    with _sealed(stack):
        trace = claude.messages.with_raw_response.create(**kw).headers["x-request-id"]
        assert _rows(stack, trace) == [] and stack.usage_rows(trace)  # served, not kept
        assert retainer.dropped == dropped + 1
        reply = _read(stack, kept, tokens["auditor"])
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "vault_sealed"
        assert "unseal" in reply.json()["error"]["message"]
        assert '"outcome":"sealed"' in _reads(stack, kept)[-1]["after"]
    assert _read(stack, kept, tokens["auditor"]).status_code == 200


# --- logs ---------------------------------------------------------------------------------


@contextmanager
def _captured() -> Iterator[io.StringIO]:
    """Every record the root logger sees meanwhile, at DEBUG, as the gateway's handler
    writes it."""
    buf = io.StringIO()
    handler = logs.make_handler("json", buf)
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buf
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def test_no_retained_content_reaches_a_log_line(stack: Stack, tokens: dict[str, str]) -> None:
    with _captured() as buf:
        _, secret = _project(stack, "full")
        sdk = _oai(stack, secret)
        raw = sdk.chat.completions.with_raw_response.create(
            model="oa", messages=[{"role": "user", "content": _prompt()}]
        )
        for _ in sdk.chat.completions.create(
            model="oa", messages=[{"role": "user", "content": _prompt()}], stream=True
        ):
            pass
        trace = raw.headers["x-request-id"]
        assert _read(stack, trace, tokens["admin"]).status_code == 200
        with _sealed(stack):
            assert _read(stack, trace, tokens["admin"]).status_code == 503
    text = buf.getvalue()
    assert text  # something was logged (the reloads at least)
    assert MARKER not in text and EMAIL not in text
