"""Streams read back into whole answers: the inverse of replay, for any answer replay can send
and however the bytes are cut; streams written the way the providers write them; and every
stream that is not whole, or not understood, gives no answer (never an exception)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cache import collect, collector, replay_stream
from gateway.usage import Usage

# ---------------------------------------------------------------- round trips through replay

texts = st.text(max_size=12)
words = st.text(min_size=1, max_size=12)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=10)
tokens = st.integers(min_value=0, max_value=10**6)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=6)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
token_logprob = st.fixed_dictionaries(
    {"token": words, "logprob": st.floats(-20, 0), "bytes": st.lists(st.integers(0, 255))}
)


@st.composite
def chat_choice(draw: st.DrawFn, index: int) -> dict[str, Any]:
    calls = [
        {
            "id": draw(ids),
            "type": "function",
            "function": {
                "name": draw(ids),
                "arguments": orjson.dumps(draw(st.dictionaries(ids, json_values))).decode()
                if draw(st.booleans())
                else draw(texts),
            },
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    content = draw(st.none() | texts) if calls else draw(texts)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content,
        "refusal": draw(st.none() | words),
    }
    if calls:
        message["tool_calls"] = calls
    logprobs = None
    if content and draw(st.booleans()):  # a stream carries logprobs with its text
        logprobs = {"content": draw(st.lists(token_logprob, max_size=3)), "refusal": None}
    finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}


def _openai_head(draw: st.DrawFn, obj: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": draw(ids),
        "object": obj,
        "created": draw(st.integers(0, 2**31)),
        "model": draw(ids),
    }
    if draw(st.booleans()):
        body["system_fingerprint"] = draw(ids)
    if obj == "chat.completion" and draw(st.booleans()):
        body["service_tier"] = "default"
    return body


def _openai_usage(draw: st.DrawFn) -> dict[str, Any]:
    prompt, completion = draw(tokens), draw(tokens)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@st.composite
def chat_completions(draw: st.DrawFn) -> dict[str, Any]:
    body = _openai_head(draw, "chat.completion")
    body["choices"] = [draw(chat_choice(i)) for i in range(draw(st.integers(1, 3)))]
    body["usage"] = _openai_usage(draw)
    return body


@st.composite
def text_completions(draw: st.DrawFn) -> dict[str, Any]:
    body = _openai_head(draw, "text_completion")
    legacy_logprobs = st.fixed_dictionaries(
        {
            "tokens": st.lists(words, max_size=3),
            "token_logprobs": st.lists(st.floats(-20, 0), max_size=3),
            "top_logprobs": st.just([]),
            "text_offset": st.lists(st.integers(0, 99), max_size=3),
        }
    )
    body["choices"] = [
        {
            "text": draw(texts),
            "index": i,
            "logprobs": draw(st.none() | legacy_logprobs),
            "finish_reason": draw(st.sampled_from(["stop", "length"])),
        }
        for i in range(draw(st.integers(1, 3)))
    ]
    body["usage"] = _openai_usage(draw)
    return body


citation = st.fixed_dictionaries(
    {"type": st.just("char_location"), "cited_text": words, "start_char_index": tokens}
)
anthropic_blocks = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, texts),
    st.builds(
        lambda t, c: {"type": "text", "text": t, "citations": c},
        texts,
        st.lists(citation, min_size=1, max_size=2),
    ),
    st.builds(
        lambda i, n, inp: {"type": "tool_use", "id": i, "name": n, "input": inp},
        ids,
        ids,
        st.dictionaries(ids, json_values, max_size=3),
    ),
    st.builds(lambda t, s: {"type": "thinking", "thinking": t, "signature": s}, texts, texts),
    st.builds(lambda d: {"type": "redacted_thinking", "data": d}, words),
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    usage = {"input_tokens": draw(tokens), "output_tokens": draw(tokens)}
    if draw(st.booleans()):
        usage |= {"cache_creation_input_tokens": draw(tokens), "cache_read_input_tokens": 0}
    return {
        "id": "msg_" + draw(ids),
        "type": "message",
        "role": "assistant",
        "model": draw(ids),
        "content": draw(st.lists(anthropic_blocks, max_size=4)),
        "stop_reason": draw(st.sampled_from(["end_turn", "max_tokens", "tool_use", "refusal"])),
        "stop_sequence": draw(st.none() | words),
        "usage": usage,
    }


def _cut(data: bytes, draw: Callable[[Any], Any]) -> list[bytes]:
    """The stream in pieces cut anywhere (inside events, lines, UTF-8 characters)."""
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=12))))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def _collected(data: bytes, api: str, endpoint: str, draw: Callable[[Any], Any]) -> Any:
    if draw(st.booleans()):
        data = data.replace(b"\n", b"\r\n")
    c = collector(api, endpoint)
    for piece in _cut(data, draw):
        c.feed(piece)
    return c.result()


@settings(max_examples=150, deadline=None)
@given(body=chat_completions(), include_usage=st.booleans(), data=st.data())
def test_chat_round_trip(body: dict[str, Any], include_usage: bool, data: st.DataObject) -> None:
    stream = replay_stream(body, include_usage)
    got = _collected(stream, "openai", "chat", data.draw)
    if include_usage:
        assert got == body
    else:  # the client did not ask for the usage chunk: the stream has none
        assert got == {k: v for k, v in body.items() if k != "usage"}


@settings(max_examples=100, deadline=None)
@given(body=text_completions(), include_usage=st.booleans(), data=st.data())
def test_completion_round_trip(
    body: dict[str, Any], include_usage: bool, data: st.DataObject
) -> None:
    got = _collected(replay_stream(body, include_usage), "openai", "completions", data.draw)
    assert got == (body if include_usage else {k: v for k, v in body.items() if k != "usage"})


@settings(max_examples=150, deadline=None)
@given(body=messages(), data=st.data())
def test_message_round_trip(body: dict[str, Any], data: st.DataObject) -> None:
    assert _collected(replay_stream(body), "anthropic", "chat", data.draw) == body


@settings(max_examples=100, deadline=None)
@given(body=chat_completions() | text_completions() | messages(), data=st.data())
def test_a_cut_stream_gives_no_answer(body: dict[str, Any], data: st.DataObject) -> None:
    api = "anthropic" if body.get("type") == "message" else "openai"
    endpoint = "completions" if body.get("object") == "text_completion" else "chat"
    stream = replay_stream(body, True)
    end = data.draw(st.integers(0, len(stream) - 3))  # short of the end marker's blank line
    assert collect(stream[:end], api, endpoint) is None


@settings(max_examples=200, deadline=None)
@given(
    junk=st.binary(max_size=200)
    | st.lists(st.sampled_from([b"data: ", b"event: ", b"\n", b"{", b"}", b"[DONE]", b"\r"])).map(
        b"".join
    ),
    api=st.sampled_from(["openai", "anthropic"]),
    endpoint=st.sampled_from(["chat", "completions"]),
)
def test_junk_never_raises(junk: bytes, api: str, endpoint: str) -> None:
    c = collector(api, endpoint)
    c.feed(junk)
    c.feed(b"data: [DONE]\n\n")
    got = c.result(Usage(1, 2))
    assert got is None or isinstance(got, dict)


# ---------------------------------------------------------------- streams as providers send them


def sse(*chunks: Any, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return b"".join(head + b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)


def events(*pairs: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(sse(data, event=name) for name, data in pairs)


HEAD = {
    "id": "chatcmpl-A1",
    "object": "chat.completion.chunk",
    "created": 1730000000,
    "model": "gpt-4o-mini-2024-07-18",
    "service_tier": "default",
    "system_fingerprint": "fp_0ba0d124f1",
    "usage": None,
}


def chunk(*choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**HEAD, "choices": list(choices), **extra}


def delta(index: int = 0, finish: str | None = None, lp: Any = None, **d: Any) -> dict[str, Any]:
    return {"index": index, "delta": d, "logprobs": lp, "finish_reason": finish}


def lp(token: str) -> dict[str, Any]:
    entry = {"token": token, "logprob": -0.5, "bytes": list(token.encode()), "top_logprobs": []}
    return {"content": [entry], "refusal": None}


def feed_bytewise(data: bytes, api: str = "openai") -> dict[str, Any] | None:
    """The stream fed one byte at a time."""
    c = collector(api)
    for i in range(len(data)):
        c.feed(data[i : i + 1])
    return c.result()


def test_openai_text_with_logprobs_and_usage_chunk() -> None:
    stream = (
        sse(
            chunk(delta(role="assistant", content="", refusal=None)),
            chunk(delta(content="Hel", lp=lp("Hel"))),
            chunk(delta(content="lo", lp=lp("lo")), obfuscation="x1"),
            chunk(delta(content=" ✓", lp=lp(" ✓"))),
            chunk(delta(finish="stop")),
            chunk(usage={"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}),
        )
        + b"data: [DONE]\n\n"
    )
    want = {
        "id": "chatcmpl-A1",
        "object": "chat.completion",
        "created": 1730000000,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello ✓", "refusal": None},
                "logprobs": {
                    "content": [*lp("Hel")["content"], *lp("lo")["content"], *lp(" ✓")["content"]],
                    "refusal": None,
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11},
    }
    assert feed_bytewise(stream) == want
    assert feed_bytewise(stream.replace(b"\n", b"\r\n")) == want
    assert collect(stream, "openai") == want


def test_openai_parallel_tool_calls_in_fragments() -> None:
    def call(n: int, **fn: Any) -> dict[str, Any]:
        return {"index": n, "function": fn}

    opening: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    first = {"index": 0, "id": "call_a", "type": "function", **call(0, name="f", arguments="")}
    second = {"index": 1, "id": "call_b", "type": "function", **call(1, name="g", arguments="")}
    stream = (
        sse(
            chunk(delta(**opening, tool_calls=[first])),
            chunk(delta(tool_calls=[call(0, arguments='{"ci')])),
            chunk(delta(tool_calls=[call(0, arguments='ty": "Par')])),
            chunk(delta(tool_calls=[second])),
            chunk(delta(tool_calls=[call(1, arguments="{}")])),
            chunk(delta(tool_calls=[call(0, arguments='is"}')])),
            chunk(delta(finish="tool_calls")),
        )
        + b"data: [DONE]\n\n"
    )
    got = collect(stream, "openai")
    assert got is not None
    [choice] = got["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "f", "arguments": '{"city": "Paris"}'},
            },
            {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
        ],
    }
    assert "usage" not in got
    filled = collector("openai")
    filled.feed(stream)
    result = filled.result(Usage(input_tokens=12, output_tokens=7, cached_tokens=4))
    assert result is not None and result["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 7,
        "total_tokens": 19,
        "prompt_tokens_details": {"cached_tokens": 4},
    }


def test_openai_several_choices_in_one_chunk() -> None:
    open2 = [delta(i, role="assistant", content="") for i in (0, 1)]
    stream = (
        sse(
            chunk(*open2),
            chunk(delta(0, content="A"), delta(1, content="B")),
            chunk(delta(1, content="b")),
            chunk(delta(0, content="a")),
            chunk(delta(1, finish="length"), delta(0, finish="stop")),
        )
        + b": keep-alive\n\n"
        + b"data: [DONE]\n\n"
    )
    got = collect(stream, "openai")
    assert got is not None
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in got["choices"]] == [
        (0, "Aa", "stop"),
        (1, "Bb", "length"),
    ]


def test_legacy_completion_stream() -> None:
    head = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "instruct"}

    def piece(text: str, finish: str | None = None) -> dict[str, Any]:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice]}

    stream = sse(piece(" once"), piece(" upon"), piece("", "length")) + b"data: [DONE]\n\n"
    got = collect(stream, "openai", "completions")
    assert got == {
        **head,
        "choices": [
            {"text": " once upon", "index": 0, "logprobs": None, "finish_reason": "length"}
        ],
    }


MESSAGE_START: dict[str, Any] = {
    "type": "message_start",
    "message": {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 25,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        },
    },
}


def block_delta(index: int, kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    data = {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}}
    return "content_block_delta", data


def anthropic_stream(final_usage: bool = True) -> bytes:
    tool = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}
    message_delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
    }
    if final_usage:
        message_delta["usage"] = {"output_tokens": 89}
    return events(
        ("message_start", MESSAGE_START),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
        block_delta(0, "text_delta", text="Okay, let"),
        block_delta(0, "text_delta", text="'s check."),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 1, "content_block": tool},
        ),
        block_delta(1, "input_json_delta", partial_json=""),
        block_delta(1, "input_json_delta", partial_json='{"location": "San Fra'),
        block_delta(1, "input_json_delta", partial_json='ncisco, CA", "unit": "f'),
        block_delta(1, "input_json_delta", partial_json='ahrenheit"}'),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("message_delta", message_delta),
        ("message_stop", {"type": "message_stop"}),
    )


def test_anthropic_text_then_tool_use_with_pings() -> None:
    want = {
        **MESSAGE_START["message"],
        "content": [
            {"type": "text", "text": "Okay, let's check."},
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "get_weather",
                "input": {"location": "San Francisco, CA", "unit": "fahrenheit"},
            },
        ],
        "stop_reason": "tool_use",
        "usage": {
            "input_tokens": 25,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 89,
        },
    }
    stream = anthropic_stream()
    assert feed_bytewise(stream, "anthropic") == want
    assert feed_bytewise(stream.replace(b"\n", b"\r\n"), "anthropic") == want
    # Without the final count, the gateway's own fills in the output tokens.
    got = collect(anthropic_stream(final_usage=False), "anthropic")
    assert got is not None and got["usage"]["output_tokens"] == 1  # message_start's placeholder
    c = collector("anthropic")
    c.feed(anthropic_stream(final_usage=False))
    got = c.result(Usage(input_tokens=25, output_tokens=40, estimated=True))
    assert got is not None and got["usage"]["output_tokens"] == 40
    assert got["usage"]["input_tokens"] == 25


def test_anthropic_thinking_and_signature() -> None:
    stream = events(
        ("message_start", MESSAGE_START),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            },
        ),
        block_delta(0, "thinking_delta", thinking="Let me "),
        block_delta(0, "thinking_delta", thinking="think."),
        block_delta(0, "signature_delta", signature="EqQBCgIYAhIM"),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    )
    got = collect(stream, "anthropic")
    assert got is not None
    thinking = {"type": "thinking", "thinking": "Let me think.", "signature": "EqQBCgIYAhIM"}
    assert got["content"] == [thinking]
    assert got["stop_reason"] == "end_turn"


# ---------------------------------------------------------------- no answer


OPENAI_OK = sse(chunk(delta(role="assistant", content="hi")), chunk(delta(finish="stop")))


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(OPENAI_OK, id="no [DONE]"),
        pytest.param(OPENAI_OK[:-1] + b"data: [DONE]\n\n", id="broken framing"),
        pytest.param(OPENAI_OK + b"data: [DONE]", id="[DONE] without its blank line"),
        pytest.param(
            OPENAI_OK[:40] + b"\n\ndata: [DONE]\n\n", id="an event cut short (invalid JSON)"
        ),
        pytest.param(
            OPENAI_OK
            + sse({"error": {"message": "overloaded", "type": "server_error"}})
            + b"data: [DONE]\n\n",
            id="error chunk",
        ),
        pytest.param(
            sse(chunk(delta(audio={"id": "a", "data": "AAA"}), delta(finish="stop")))
            + b"data: [DONE]\n\n",
            id="a delta field it does not know",
        ),
        pytest.param(OPENAI_OK + b"data: [DONE]\n\n" + OPENAI_OK, id="more after [DONE]"),
        pytest.param(b"data: [DONE]\n\n", id="nothing but [DONE]"),
        pytest.param(
            sse(chunk(delta(role="assistant", content=["not", "text"]))) + b"data: [DONE]\n\n",
            id="content not a string",
        ),
        pytest.param(b"event: message\n" + OPENAI_OK + b"data: [DONE]\n\n", id="a named event"),
    ],
)
def test_openai_streams_that_give_no_answer(stream: bytes) -> None:
    assert collect(stream, "openai") is None


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda s: s.rsplit(b"event: message_stop", 1)[0], id="no message_stop"),
        pytest.param(
            lambda s: s.replace(
                b"event: ping",
                b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
                b'"message":"Overloaded"}}\n\nevent: ping',
            ),
            id="error event",
        ),
        pytest.param(
            lambda s: s.replace(b'ahrenheit\\"}', b'ahrenheit\\"'), id="tool input not JSON"
        ),
        pytest.param(lambda s: s.replace(b"text_delta", b"novel_delta"), id="unknown delta kind"),
        pytest.param(lambda s: s.replace(b"event: ping", b"event: surprise"), id="unknown event"),
        pytest.param(lambda s: s.split(b"\n\n", 1)[1], id="no message_start"),
        pytest.param(lambda s: s.replace(b'"index":1', b'"index":7', 1), id="delta of no block"),
    ],
)
def test_anthropic_streams_that_give_no_answer(mutate: Any) -> None:
    stream = mutate(anthropic_stream())
    assert stream != anthropic_stream()
    assert collect(stream, "anthropic") is None
