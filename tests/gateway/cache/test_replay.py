"""Cached answers replayed as JSON and as streams, read back by the official SDKs' own parsers.

A tiny aiohttp server on loopback serves the bytes in small, odd-sized writes, so the SSE
framing is parsed the way a slow network would deliver it; the async clients read them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import orjson
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from gateway.cache import Entry, replay, replay_json, replay_stream
from gateway.usage import Usage

CHAT_TEXT = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_1",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello, world! ✓", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "Second.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",  # the SDK's stream helper refuses "length",
        },
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
}
CHAT_TOOLS = {
    "id": "chatcmpl-tools",
    "object": "chat.completion",
    "created": 1700000001,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"query": "a \\"b\\""}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "now", "arguments": "{}"},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32},
}
COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1700000002,
    "model": "gpt-3.5-turbo-instruct",
    "choices": [
        {"text": " once upon a time", "index": 0, "logprobs": None, "finish_reason": "length"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
}
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="},
        {"type": "text", "text": "I'll look that up."},
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"query": "x", "n": 2}},
        {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 30,
        "output_tokens": 18,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
    },
}


class Clients:
    """SDK clients of a loopback server that sends whatever payload it was last given."""

    def __init__(self, url: str, state: dict[str, Any]) -> None:
        self.url = url
        self.state = state
        self.opened: list[openai.AsyncOpenAI | anthropic.AsyncAnthropic] = []

    def oai(self, payload: bytes, stream: bool = True) -> openai.AsyncOpenAI:
        self.state.update(payload=payload, stream=stream)
        client = openai.AsyncOpenAI(base_url=self.url + "/v1", api_key="k", max_retries=0)
        self.opened.append(client)
        return client

    def ant(self, payload: bytes, stream: bool = True) -> anthropic.AsyncAnthropic:
        self.state.update(payload=payload, stream=stream)
        client = anthropic.AsyncAnthropic(base_url=self.url, api_key="k", max_retries=0)
        self.opened.append(client)
        return client


@pytest.fixture
async def sdk(aiohttp_server: AiohttpServer) -> AsyncIterator[Clients]:
    """A loopback server serving a payload (SSE or JSON), and SDK clients pointed at it."""
    state: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        payload, stream = state["payload"], state["stream"]
        ctype = "text/event-stream; charset=utf-8" if stream else "application/json"
        out = web.StreamResponse(headers={"Content-Type": ctype})
        await out.prepare(request)
        for i in range(0, len(payload), 7):  # frames split anywhere, even inside UTF-8
            await out.write(payload[i : i + 7])
        await out.write_eof()
        return out

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app)
    clients = Clients(str(server.make_url("")).rstrip("/"), state)
    yield clients
    for client in clients.opened:
        await client.close()


def entry(body: dict[str, Any]) -> Entry:
    return Entry.of(body, Usage(1, 1), 5, 0.0)


MSGS: Any = [{"role": "user", "content": "hi"}]
ARGS: Any = {"model": "m", "messages": MSGS}


async def test_json_hit_is_the_body_verbatim(sdk: Clients) -> None:
    e = entry(CHAT_TEXT)
    assert replay_json(e) is e.raw and replay(e, stream=False) is e.raw
    client = sdk.oai(e.raw, stream=False)
    got = await client.chat.completions.create(model="m", messages=MSGS)
    assert got.model_dump(exclude_unset=True) == CHAT_TEXT


@pytest.mark.parametrize("body", [CHAT_TEXT, CHAT_TOOLS], ids=["text", "tools"])
@pytest.mark.parametrize("include_usage", [False, True])
async def test_openai_chat_stream(sdk: Clients, body: dict[str, Any], include_usage: bool) -> None:
    data = replay(entry(body), stream=True, include_usage=include_usage)
    assert data.endswith(b"data: [DONE]\n\n")
    client = sdk.oai(data)
    opts: Any = {"include_usage": True} if include_usage else openai.omit
    events = await client.chat.completions.create(
        model="m", messages=MSGS, stream=True, stream_options=opts
    )
    chunks = [c async for c in events]
    assert all(c.id == body["id"] and c.created == body["created"] for c in chunks)
    usage_chunks = [c for c in chunks if c.usage is not None]
    if include_usage:
        assert len(usage_chunks) == 1 and chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.model_dump(exclude_unset=True) == body["usage"]
    else:
        assert usage_chunks == [] and all(c.choices for c in chunks)
    # The SDK's own accumulator rebuilds the cached completion.
    async with sdk.oai(data).chat.completions.stream(
        model="m", messages=MSGS, stream_options=opts
    ) as stream:
        final = await stream.get_final_completion()
    assert len(final.choices) == len(body["choices"])
    for got, want in zip(final.choices, body["choices"], strict=True):
        assert got.finish_reason == want["finish_reason"]
        assert got.message.content == want["message"]["content"]
        calls = [
            {
                "id": c.id,
                "type": c.type,
                "function": c.function.model_dump(include={"name", "arguments"}),
            }
            for c in got.message.tool_calls or ()
        ]
        assert calls == want["message"].get("tool_calls", [])
    if include_usage:
        assert final.usage is not None and final.usage.total_tokens == body["usage"]["total_tokens"]


async def test_openai_chat_stream_carries_logprobs(sdk: Clients) -> None:
    logprobs = {
        "content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}],
        "refusal": None,
    }
    body = {**CHAT_TEXT, "choices": [{**CHAT_TEXT["choices"][0], "logprobs": logprobs}]}
    client = sdk.oai(replay_stream(body))
    chunks = [c async for c in await client.chat.completions.create(**ARGS, stream=True)]
    carried = [c.choices[0].logprobs for c in chunks if c.choices[0].logprobs is not None]
    assert [lp.model_dump(exclude_unset=True) for lp in carried] == [logprobs]


async def test_legacy_completion_stream(sdk: Clients) -> None:
    data = replay(entry(COMPLETION), stream=True, include_usage=True)
    client = sdk.oai(data)
    opts: Any = {"include_usage": True}
    events = await client.completions.create(
        model="m", prompt="x", stream=True, stream_options=opts
    )
    parts = [c async for c in events]
    text = "".join(c.choices[0].text for c in parts if c.choices)
    assert text == COMPLETION["choices"][0]["text"]
    assert [c.choices[0].finish_reason for c in parts if c.choices] == [None, "length"]
    assert parts[-1].usage is not None and parts[-1].usage.total_tokens == 7
    assert all(c.object == "text_completion" and c.id == "cmpl-1" for c in parts)
    client = sdk.oai(replay_stream(COMPLETION))
    no_usage = [
        c async for c in await client.completions.create(model="m", prompt="x", stream=True)
    ]
    assert all(c.usage is None for c in no_usage)


async def test_anthropic_message_stream(sdk: Clients) -> None:
    data = replay(entry(MESSAGE), stream=True)
    for frame in data.strip().split(b"\n\n"):  # every frame names its event: the SDK needs it
        assert frame.startswith(b"event: ")
    client = sdk.ant(data)
    async with client.messages.stream(model="m", max_tokens=10, messages=MSGS) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "I'll look that up."
    assert final.model_dump(exclude_unset=True, exclude_none=True) == {
        k: v for k, v in MESSAGE.items() if v is not None
    }


async def test_anthropic_text_only_raw_events(sdk: Clients) -> None:
    body = {**MESSAGE, "content": [{"type": "text", "text": "Hi ✓"}], "stop_reason": "end_turn"}
    client = sdk.ant(replay_stream(body))
    stream = await client.messages.create(model="m", max_tokens=10, messages=MSGS, stream=True)
    events = [e async for e in stream]
    names = [e.type for e in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    delta = events[4]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens == 18
    start = events[0]
    assert start.type == "message_start" and start.message.usage.input_tokens == 30


async def test_anthropic_json_hit(sdk: Clients) -> None:
    e = entry(MESSAGE)
    client = sdk.ant(replay_json(e), stream=False)
    got = await client.messages.create(model="m", max_tokens=10, messages=MSGS)
    assert got.content[2].type == "tool_use" and got.content[2].input == {"query": "x", "n": 2}
    assert json.loads(e.raw) == MESSAGE == orjson.loads(got.to_json())


def test_embeddings_have_no_stream_form() -> None:
    with pytest.raises(ValueError):
        replay_stream({"object": "list", "data": []})
