"""Property tests: translations preserve what the client said."""

from __future__ import annotations

import base64
import itertools
import struct
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.translate.anthropic import (
    AnthropicToOpenAIStream,
    OpenAIToAnthropicStream,
    anthropic_request_to_openai,
    openai_request_to_anthropic,
)
from gateway.translate.gemini import gemini_embeddings_to_openai, openai_request_to_gemini

texts = st.text(min_size=1, max_size=30).filter(lambda s: s.strip())
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=4, max_size=12)
names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
arguments = st.dictionaries(st.text(max_size=6), json_values, max_size=4)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """OpenAI conversations: user turns, assistant turns (text and/or parallel tool calls), tool
    results right after the calls. Assistant turns never follow each other."""
    messages: list[dict[str, Any]] = []
    used: set[str] = set()
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(texts)})
    messages.append({"role": "user", "content": draw(texts)})
    for _ in range(draw(st.integers(0, 3))):
        calls = []
        for _ in range(draw(st.integers(0, 3))):
            call_id = draw(ids.filter(lambda i: i not in used))
            used.add(call_id)
            args = draw(arguments)
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": draw(names), "arguments": orjson.dumps(args).decode()},
                }
            )
        text = draw(st.none() | texts) if calls else draw(texts)
        assistant: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            assistant["tool_calls"] = calls
        messages.append(assistant)
        for call in calls:
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": draw(texts)})
        for _ in range(draw(st.integers(0 if calls else 1, 2))):
            messages.append({"role": "user", "content": draw(texts)})
    return messages


def _items(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a conversation says, independent of how turns are grouped."""
    out: list[tuple[Any, ...]] = []
    for msg in messages:
        role = msg["role"]
        content = msg.get("content")
        if role == "tool":
            out.append(("result", msg["tool_call_id"], content))
            continue
        if isinstance(content, str):
            out.append((role, content))
        elif isinstance(content, list):
            out.extend((role, part["text"]) for part in content)
        for call in msg.get("tool_calls") or ():
            args = orjson.loads(call["function"]["arguments"] or "{}")
            out.append(("call", call["id"], call["function"]["name"], args))
    return out


@settings(max_examples=60, deadline=None)
@given(conversations())
def test_openai_anthropic_openai_request_round_trip(messages: list[dict[str, Any]]) -> None:
    body = {"model": "x", "messages": messages, "max_tokens": 64}
    anthropic = openai_request_to_anthropic(body, "claude")
    roles = [m["role"] for m in anthropic["messages"]]
    assert all(a != b for a, b in itertools.pairwise(roles)), "roles must alternate"
    back = anthropic_request_to_openai(anthropic, "gpt")
    assert _items(back["messages"]) == _items(messages)
    assert back["max_completion_tokens"] == 64


@settings(max_examples=50, deadline=None)
@given(conversations())
def test_gemini_request_recovers_every_function_name(messages: list[dict[str, Any]]) -> None:
    names_by_id = {
        call["id"]: call["function"]["name"]
        for msg in messages
        for call in msg.get("tool_calls") or ()
    }
    req = openai_request_to_gemini({"messages": messages})
    roles = [c["role"] for c in req["contents"]]
    assert all(a != b for a, b in itertools.pairwise(roles))
    responses = [
        p["functionResponse"]["name"]
        for c in req["contents"]
        for p in c["parts"]
        if "functionResponse" in p
    ]
    expected = [names_by_id[m["tool_call_id"]] for m in messages if m["role"] == "tool"]
    assert responses == expected
    calls = [
        p["functionCall"]["args"]
        for c in req["contents"]
        for p in c["parts"]
        if "functionCall" in p
    ]
    assert calls == [
        orjson.loads(call["function"]["arguments"])
        for m in messages
        for call in m.get("tool_calls") or ()
    ]


def _fragments(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=4)))
    bounds = [0, *[c for c in cuts if c < len(text)], len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if text[a:b]]


@st.composite
def openai_streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], str, list[tuple[str, Any]]]:
    text = draw(st.text(max_size=40))
    calls = [(draw(ids), draw(names), draw(arguments)) for _ in range(draw(st.integers(0, 3)))]
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in _fragments(draw, text)]
    for index, (call_id, name, args) in enumerate(calls):
        encoded = orjson.dumps(args).decode()
        head = {"index": index, "id": call_id, "type": "function"}
        chunks.append(
            chunk({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
        )
        for piece in _fragments(draw, encoded):
            chunks.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            )
    chunks.append(chunk({}, "tool_calls" if calls else "stop"))
    usage = {
        "prompt_tokens": draw(st.integers(0, 10**6)),
        "completion_tokens": 3,
        "total_tokens": 0,
    }
    chunks.append({**base, "choices": [], "usage": usage})
    return chunks, text, [(call_id, args) for call_id, _, args in calls]


@settings(max_examples=60, deadline=None)
@given(openai_streams())
def test_stream_round_trip_openai_anthropic_openai(
    case: tuple[list[dict[str, Any]], str, list[tuple[str, Any]]],
) -> None:
    chunks, text, calls = case
    to_anthropic = OpenAIToAnthropicStream("m")
    events = [e for c in chunks for e in to_anthropic.feed(c)] + to_anthropic.finish()
    back = AnthropicToOpenAIStream("m", include_usage=True)
    out = [c for name, data in events for c in back.feed(name, data)] + back.finish()
    got_text = "".join(c["choices"][0]["delta"].get("content") or "" for c in out[:-1])
    assert got_text == text
    got: dict[int, list[Any]] = {}
    for c in out[:-1]:
        for tc in c["choices"][0]["delta"].get("tool_calls") or ():
            entry = got.setdefault(tc["index"], [None, ""])
            entry[0] = tc.get("id") or entry[0]
            entry[1] += tc["function"].get("arguments") or ""
    assert [(got[i][0], orjson.loads(got[i][1])) for i in sorted(got)] == calls
    finish = [
        c["choices"][0]["finish_reason"] for c in out[:-1] if c["choices"][0]["finish_reason"]
    ]
    assert finish == ["tool_calls" if calls else "stop"]
    assert out[-1]["usage"]["prompt_tokens"] == chunks[-1]["usage"]["prompt_tokens"]
    assert back.usage.input_tokens == to_anthropic.usage.input_tokens


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.lists(st.floats(width=32, allow_nan=False), max_size=64), min_size=1, max_size=4)
)
def test_embeddings_base64_round_trip(vectors: list[list[float]]) -> None:
    resp = {"embeddings": [{"values": v} for v in vectors]}
    out = gemini_embeddings_to_openai(resp, "m", "base64")
    for item, vector in zip(out["data"], vectors, strict=True):
        raw = base64.b64decode(item["embedding"])
        assert list(struct.unpack(f"<{len(vector)}f", raw)) == vector
