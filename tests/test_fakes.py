"""The fake providers speak the real protocols: official SDKs parse them, faults behave."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import signal
import struct
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import anthropic
import openai
import orjson
import pytest

from tests.fakes import FakeAnthropic, FakeAzure, FakeGemini, FakeOpenAI, Fault, RecordedRequest
from tests.fakes.base import FakeUpstream, split_pieces

ROOT = Path(__file__).resolve().parent.parent
USER = [{"role": "user", "content": "hi there"}]
OA_TOOLS = [
    {
        "type": "function",
        "function": {"name": "search", "parameters": {"type": "object"}},
    },
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
]
ANT_TOOLS = [
    {"name": "search", "input_schema": {"type": "object"}},
    {"name": "lookup", "input_schema": {"type": "object"}},
]


def hello(name: str, said: str) -> str:
    return f"Hello from {name}! You said: {said}"


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    """(event, data) per SSE frame."""
    out = []
    for frame in raw.split("\n\n"):
        event, data = None, []
        for line in frame.splitlines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            out.append((event, "\n".join(data)))
    return out


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def oai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def ant() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def gem() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as fake:
        yield fake


@pytest.fixture
async def azure() -> AsyncIterator[FakeAzure]:
    async with FakeAzure() as fake:
        yield fake


_sdk_clients: list[openai.AsyncOpenAI | anthropic.AsyncAnthropic] = []


@pytest.fixture(autouse=True)
async def _close_sdk_clients() -> AsyncIterator[None]:
    yield
    while _sdk_clients:
        await _sdk_clients.pop().close()


C = TypeVar("C", openai.AsyncOpenAI, anthropic.AsyncAnthropic)


def track(client: C) -> C:
    """Close the client at the end of the test."""
    _sdk_clients.append(client)
    return client


def oai_client(fake: FakeOpenAI, key: str | None = None, **kw: Any) -> openai.AsyncOpenAI:
    return track(
        openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key=key or fake.key, max_retries=0, **kw)
    )


def ant_client(fake: FakeAnthropic, key: str | None = None) -> anthropic.AsyncAnthropic:
    return track(
        anthropic.AsyncAnthropic(base_url=fake.url, api_key=key or fake.key, max_retries=0)
    )


# --- OpenAI -------------------------------------------------------------------------------------


async def test_openai_chat_sdk(oai: FakeOpenAI) -> None:
    oai.cached_tokens = 2
    client = oai_client(oai)
    messages = [{"role": "system", "content": "be brief"}, *USER]
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)
    resp = raw.parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert resp.id.startswith("chatcmpl-") and resp.model == "gpt-4o"
    assert resp.choices[0].message.content == hello("fake-openai", "hi there")
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (5, 7)
    assert resp.usage.prompt_tokens_details.cached_tokens == 2  # type: ignore[union-attr]
    rec = oai.requests[-1]
    assert isinstance(rec, RecordedRequest)
    assert (rec.method, rec.path, rec.body["model"]) == ("POST", "/v1/chat/completions", "gpt-4o")
    assert rec.headers["Authorization"] == rec.headers["authorization"] == f"Bearer {oai.key}"


async def test_openai_stream_with_usage(oai: FakeOpenAI) -> None:
    stream = await oai_client(oai).chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert pieces == split_pieces(hello("fake-openai", "hi there"))
    assert pieces[:3] == ["Hello", " from", " fake-openai!"]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(pieces)


async def test_openai_stream_wire_format(oai: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    body = {"model": "m", "messages": USER, "stream": True}
    headers = {"Authorization": f"Bearer {oai.key}"}
    async with http.post(oai.url + "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        raw = await r.text()
    assert raw.endswith("data: [DONE]\n\n")
    chunks = [orjson.loads(d) for _, d in sse_events(raw)[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)


async def test_openai_tool_calls(oai: FakeOpenAI) -> None:
    client = oai_client(oai)
    resp = await client.chat.completions.create(model="m", messages=USER, tools=OA_TOOLS)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.id.startswith("call_") and len(call.id) == 29
    assert call.function.name == "search"  # type: ignore[union-attr]
    assert orjson.loads(call.function.arguments) == {"query": "hi there"}  # type: ignore[union-attr]

    forced = {"type": "function", "function": {"name": "lookup"}}
    async with client.chat.completions.stream(
        model="m", messages=USER, tools=OA_TOOLS, tool_choice=forced
    ) as stream:
        final = await stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "lookup" and final.choices[0].finish_reason == "tool_calls"
    assert orjson.loads(call.function.arguments) == {"query": "hi there"}

    none = await client.chat.completions.create(
        model="m", messages=USER, tools=OA_TOOLS, tool_choice="none"
    )
    assert none.choices[0].message.content == hello("fake-openai", "hi there")

    followup = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "42 cats"},
    ]
    resp = await client.chat.completions.create(model="m", messages=followup, tools=OA_TOOLS)
    assert resp.choices[0].message.content == "Tool said: 42 cats"
    assert resp.usage.prompt_tokens == 5  # type: ignore[union-attr]


async def test_openai_generation_options(oai: FakeOpenAI) -> None:
    client = oai_client(oai)
    r = await client.chat.completions.create(model="m", messages=USER, stop=["said"])
    assert r.choices[0].message.content == "Hello from fake-openai! You "
    assert r.choices[0].finish_reason == "stop"
    r = await client.chat.completions.create(model="m", messages=USER, max_completion_tokens=2)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("Hello from", "length")
    assert r.usage.completion_tokens == 2  # type: ignore[union-attr]
    r = await client.chat.completions.create(model="m", messages=USER, n=3, logprobs=True)
    assert [c.index for c in r.choices] == [0, 1, 2]
    tokens = r.choices[2].logprobs.content  # type: ignore[union-attr]
    assert [t.token for t in tokens] == split_pieces(hello("fake-openai", "hi there"))  # type: ignore[union-attr]
    assert tokens[0].bytes == list(b"Hello") and tokens[0].logprob == -0.1  # type: ignore[index]
    r = await client.chat.completions.create(
        model="m", messages=USER, response_format={"type": "json_object"}
    )
    assert orjson.loads(r.choices[0].message.content) == {"reply": hello("fake-openai", "hi there")}  # type: ignore[arg-type]


async def test_openai_legacy_completions(oai: FakeOpenAI) -> None:
    client = oai_client(oai)
    r = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["a b", "c"])
    assert r.object == "text_completion"
    assert [c.text for c in r.choices] == [hello("fake-openai", "a b"), hello("fake-openai", "c")]
    assert r.usage.prompt_tokens == 5  # type: ignore[union-attr]
    stream = await client.completions.create(model="m", prompt="yo", stream=True, max_tokens=3)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].text for c in chunks) == "Hello from fake-openai!"
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_openai_embeddings_and_models(oai: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    client = oai_client(oai)
    emb = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b c"])
    assert oai.requests[-1].body["encoding_format"] == "base64"  # the SDK's default
    assert [len(d.embedding) for d in emb.data] == [8, 8] and emb.usage.prompt_tokens == 3
    floats = await client.embeddings.create(
        model="m", input="b c", encoding_format="float", dimensions=4
    )
    assert len(floats.data[0].embedding) == 4
    again = await client.embeddings.create(model="m", input="b c", encoding_format="float")
    assert again.data[0].embedding == emb.data[1].embedding  # deterministic, base64 == float
    assert abs(sum(v * v for v in emb.data[0].embedding) - 1) < 1e-5
    headers = {"Authorization": f"Bearer {oai.key}"}
    body = {"model": "m", "input": [[1, 2, 3]], "encoding_format": "base64"}
    async with http.post(oai.url + "/v1/embeddings", json=body, headers=headers) as r:
        blob = base64.b64decode((await r.json())["data"][0]["embedding"])
    assert len(struct.unpack("<8f", blob)) == 8
    models = await client.models.list()
    assert "gpt-4o" in [m.id for m in models.data]
    assert (await client.models.retrieve("gpt-4o")).object == "model"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("nope")


async def test_openai_errors(oai: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    with pytest.raises(openai.AuthenticationError) as auth:
        await oai_client(oai, "sk-wrong").chat.completions.create(model="m", messages=USER)
    assert auth.value.code == "invalid_api_key" and auth.value.type == "invalid_request_error"
    client = oai_client(oai)
    oai.inject(Fault("status", status=429, retry_after="7", message="slow down"))
    with pytest.raises(openai.RateLimitError) as rate:
        await client.chat.completions.create(model="m", messages=USER)
    assert rate.value.response.headers["retry-after"] == "7"
    assert rate.value.message.endswith("slow down") and rate.value.code == "rate_limit_exceeded"
    oai.inject(Fault("status", status=503))
    with pytest.raises(openai.InternalServerError):
        await client.embeddings.create(model="m", input="x")
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="m", messages=[])
    assert bad.value.code == "empty_array" and bad.value.param == "messages"
    headers = {"Authorization": f"Bearer {oai.key}"}
    for body, message in [
        ({"messages": USER}, "you must provide a model parameter"),
        ({"model": "m"}, "Missing required parameter: 'messages'."),
    ]:
        async with http.post(oai.url + "/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status == 400
            err = (await r.json())["error"]
        assert err["message"] == message and set(err) == {"message", "type", "param", "code"}
    async with http.post(oai.url + "/v1/nope", json={}, headers=headers) as r:
        assert r.status == 404 and "Invalid URL" in (await r.json())["error"]["message"]


async def test_openai_no_usage(oai: FakeOpenAI) -> None:
    client = oai_client(oai)
    oai.inject(Fault("no_usage", times=2))
    r = await client.chat.completions.create(model="m", messages=USER)
    assert r.usage is None
    stream = await client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert all(c.choices and c.usage is None for c in chunks)
    assert (await client.chat.completions.create(model="m", messages=USER)).usage is not None


# --- Anthropic ----------------------------------------------------------------------------------


async def test_anthropic_messages_sdk(ant: FakeAnthropic) -> None:
    ant.cached_tokens = 3
    client = ant_client(ant)
    msg = await client.messages.create(
        model="claude-x",
        max_tokens=100,
        system=[{"type": "text", "text": "be brief"}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi there"}]}],
    )
    assert msg.id.startswith("msg_") and msg.model == "claude-x" and msg._request_id
    assert msg.content[0].type == "text"
    assert msg.content[0].text == hello("fake-anthropic", "hi there")
    assert (msg.stop_reason, msg.stop_sequence) == ("end_turn", None)
    # input_tokens excludes cache reads, as in the real API: 5 prompt tokens, 3 of them cached.
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (2, 7)
    assert (msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (3, 0)
    assert ant.requests[-1].headers["anthropic-version"]


async def test_anthropic_stream_sdk(ant: FakeAnthropic) -> None:
    async with ant_client(ant).messages.stream(
        model="c", max_tokens=100, messages=USER, stop_sequences=["said"]
    ) as stream:
        pieces = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert pieces == ["Hello", " from", " fake-anthropic!", " You "]
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "said")
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 4)


async def test_anthropic_stream_wire_format(
    ant: FakeAnthropic, http: aiohttp.ClientSession
) -> None:
    headers = {"x-api-key": ant.key, "anthropic-version": "2023-06-01"}
    body = {"model": "c", "max_tokens": 2, "messages": USER, "stream": True}
    async with http.post(ant.url + "/v1/messages", json=body, headers=headers) as r:
        assert r.headers["request-id"]
        events = sse_events(await r.text())
    names = [e for e, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(orjson.loads(d)["type"] == e for e, d in events)
    delta = orjson.loads(events[-2][1])
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert delta["usage"] == {"output_tokens": 2}
    assert orjson.loads(events[0][1])["message"]["usage"]["output_tokens"] == 1


async def test_anthropic_tool_use(ant: FakeAnthropic) -> None:
    client = ant_client(ant)
    async with client.messages.stream(
        model="c",
        max_tokens=100,
        messages=USER,
        tools=ANT_TOOLS,
        tool_choice={"type": "tool", "name": "lookup"},
    ) as stream:
        final = await stream.get_final_message()
    block = final.content[0]
    assert block.type == "tool_use" and final.stop_reason == "tool_use"
    assert block.name == "lookup" and block.input == {"query": "hi there"}
    assert block.id.startswith("toolu_") and len(block.id) == 30
    result = {
        "type": "tool_result",
        "tool_use_id": block.id,
        "content": [{"type": "text", "text": "42 cats"}],
    }
    msg = await client.messages.create(
        model="c",
        max_tokens=100,
        tools=ANT_TOOLS,
        messages=[
            *USER,
            {"role": "assistant", "content": [block.model_dump()]},
            {"role": "user", "content": [result]},
        ],
    )
    assert msg.content[0].text == "Tool said: 42 cats"  # type: ignore[union-attr]
    assert msg.usage.input_tokens == 5
    msg = await client.messages.create(
        model="c", max_tokens=100, tools=ANT_TOOLS, messages=USER, tool_choice={"type": "none"}
    )
    assert msg.content[0].type == "text"


async def test_anthropic_errors(ant: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    with pytest.raises(anthropic.AuthenticationError) as auth:
        await ant_client(ant, "nope").messages.create(model="c", max_tokens=5, messages=USER)
    assert auth.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    client = ant_client(ant)
    cases: list[tuple[int, type[Exception], str]] = [
        (529, anthropic.OverloadedError, "overloaded_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (400, anthropic.BadRequestError, "invalid_request_error"),
    ]
    for status, exc, etype in cases:
        ant.inject(Fault("status", status=status, retry_after="1"))
        with pytest.raises(exc) as err:
            await client.messages.create(model="c", max_tokens=5, messages=USER)
        assert err.value.body["error"]["type"] == etype  # type: ignore[attr-defined]
        assert err.value.response.headers["retry-after"] == "1"  # type: ignore[attr-defined]
    good = {"x-api-key": ant.key, "anthropic-version": "2023-06-01"}
    for headers, body, message in [
        (good, {"model": "c", "messages": USER}, "max_tokens: Field required"),
        (good, {"model": "c", "max_tokens": 5, "messages": []}, "at least one message"),
        ({"x-api-key": ant.key}, {"model": "c", "max_tokens": 5, "messages": USER}, "version"),
    ]:
        async with http.post(ant.url + "/v1/messages", json=body, headers=headers) as r:
            assert r.status == 400
            err_body = await r.json()
        assert err_body["type"] == "error" and message in err_body["error"]["message"]


# --- Gemini -------------------------------------------------------------------------------------


async def gemini_post(
    fake: FakeGemini, http: aiohttp.ClientSession, target: str, body: Any, **params: str
) -> tuple[int, Any]:
    url = f"{fake.url}/v1beta/models/{target}"
    headers = {"x-goog-api-key": fake.key}
    async with http.post(url, json=body, headers=headers, params=params) as r:
        return r.status, await r.read()


GEM_BODY = {
    "systemInstruction": {"parts": [{"text": "be brief"}]},
    "contents": [{"role": "user", "parts": [{"text": "hi "}, {"text": "there"}]}],
}


async def test_gemini_generate(gem: FakeGemini, http: aiohttp.ClientSession) -> None:
    gem.cached_tokens = 2
    status, raw = await gemini_post(gem, http, "gemini-2.0-flash:generateContent", GEM_BODY)
    assert status == 200
    resp = orjson.loads(raw)
    cand = resp["candidates"][0]
    assert cand["content"] == {
        "parts": [{"text": hello("fake-gemini", "hi there")}],
        "role": "model",
    }
    assert cand["finishReason"] == "STOP" and resp["modelVersion"] == "gemini-2.0-flash"
    usage = resp["usageMetadata"]
    assert (usage["promptTokenCount"], usage["candidatesTokenCount"]) == (5, 7)
    assert usage["totalTokenCount"] == 12 and usage["cachedContentTokenCount"] == 2
    config = {"generationConfig": {"maxOutputTokens": 2, "stopSequences": ["x"]}}
    _, raw = await gemini_post(gem, http, "g:generateContent", {**GEM_BODY, **config})
    cand = orjson.loads(raw)["candidates"][0]
    assert (
        cand["finishReason"] == "MAX_TOKENS" and cand["content"]["parts"][0]["text"] == "Hello from"
    )


async def test_gemini_stream(gem: FakeGemini, http: aiohttp.ClientSession) -> None:
    status, raw = await gemini_post(gem, http, "g:streamGenerateContent", GEM_BODY, alt="sse")
    assert status == 200
    events = [orjson.loads(d) for _, d in sse_events(raw.decode())]
    texts = [e["candidates"][0]["content"]["parts"][0]["text"] for e in events]
    assert texts == split_pieces(hello("fake-gemini", "hi there"))
    assert all("finishReason" not in e["candidates"][0] for e in events[:-1])
    assert events[0]["usageMetadata"] == {"promptTokenCount": 5}
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == len(texts)
    _, raw = await gemini_post(gem, http, "g:streamGenerateContent", GEM_BODY)
    array = orjson.loads(raw)
    assert [e["candidates"][0]["content"]["parts"][0]["text"] for e in array] == texts


async def test_gemini_function_calling(gem: FakeGemini, http: aiohttp.ClientSession) -> None:
    tools = [{"functionDeclarations": [{"name": "search"}, {"name": "lookup"}]}]
    body = {**GEM_BODY, "tools": tools}
    _, raw = await gemini_post(gem, http, "g:generateContent", body)
    cand = orjson.loads(raw)["candidates"][0]
    assert cand["content"]["parts"] == [
        {"functionCall": {"name": "search", "args": {"query": "hi there"}}}
    ]
    assert cand["finishReason"] == "STOP"
    forced = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}}
    _, raw = await gemini_post(
        gem, http, "g:streamGenerateContent", {**body, "toolConfig": forced}, alt="sse"
    )
    (event,) = [orjson.loads(d) for _, d in sse_events(raw.decode())]
    assert event["candidates"][0]["content"]["parts"][0]["functionCall"]["name"] == "lookup"
    contents = [
        *GEM_BODY["contents"],
        {"role": "model", "parts": [{"functionCall": {"name": "search", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "search", "response": {"n": 4}}}]},
    ]
    _, raw = await gemini_post(gem, http, "g:generateContent", {**body, "contents": contents})
    parts = orjson.loads(raw)["candidates"][0]["content"]["parts"]
    assert parts == [{"text": 'Tool said: {"n":4}'}]


async def test_gemini_embeddings_and_errors(gem: FakeGemini, http: aiohttp.ClientSession) -> None:
    content = {"parts": [{"text": "abc"}]}
    status, raw = await gemini_post(gem, http, "e:embedContent", {"content": content})
    assert status == 200 and len(orjson.loads(raw)["embedding"]["values"]) == 8
    batch = {"requests": [{"content": content}, {"content": content, "outputDimensionality": 3}]}
    _, raw = await gemini_post(gem, http, "e:batchEmbedContents", batch)
    assert [len(e["values"]) for e in orjson.loads(raw)["embeddings"]] == [8, 3]
    url = f"{gem.url}/v1beta/models/g:generateContent"
    async with http.post(url, json=GEM_BODY, params={"key": gem.key}) as r:
        assert r.status == 200
    async with http.post(url, json=GEM_BODY, params={"key": "bad"}) as r:
        err = (await r.json())["error"]
        assert r.status == 400 and err["status"] == "INVALID_ARGUMENT"
        assert err["details"][0]["reason"] == "API_KEY_INVALID"
    async with http.post(url, json=GEM_BODY) as r:
        assert r.status == 403
    gem.inject(Fault("status", status=429, retry_after="3"))
    status, raw = await gemini_post(gem, http, "g:generateContent", GEM_BODY)
    err = orjson.loads(raw)["error"]
    assert (status, err["code"], err["status"]) == (429, 429, "RESOURCE_EXHAUSTED")
    status, raw = await gemini_post(gem, http, "g:generateContent", {"contents": []})
    assert status == 400 and orjson.loads(raw)["error"]["status"] == "INVALID_ARGUMENT"
    gem.inject(Fault("no_usage"))
    _, raw = await gemini_post(gem, http, "g:generateContent", GEM_BODY)
    assert "usageMetadata" not in orjson.loads(raw)


# --- Azure --------------------------------------------------------------------------------------


async def test_azure_sdk(azure: FakeAzure, http: aiohttp.ClientSession) -> None:
    client = track(
        openai.AsyncAzureOpenAI(
            azure_endpoint=azure.url, api_key=azure.key, api_version="2024-10-21", max_retries=0
        )
    )
    resp = await client.chat.completions.create(model="my-gpt4o", messages=USER)
    assert resp.model == "my-gpt4o"
    assert resp.choices[0].message.content == hello("fake-azure", "hi there")
    rec = azure.requests[-1]
    assert rec.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert rec.query["api-version"] == "2024-10-21" and rec.headers["api-key"] == azure.key
    stream = await client.chat.completions.create(model="dep", messages=USER, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == hello("fake-azure", "hi there")
    emb = await client.embeddings.create(model="emb", input="x")
    assert len(emb.data[0].embedding) == 8 and emb.model == "emb"
    bad = track(
        openai.AsyncAzureOpenAI(
            azure_endpoint=azure.url, api_key="wrong", api_version="v", max_retries=0
        )
    )
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(model="dep", messages=USER)
    url = azure.url + "/openai/deployments/dep/chat/completions"
    async with http.post(url, json={"messages": USER}, headers={"api-key": azure.key}) as r:
        assert r.status == 404
        assert await r.json() == {"error": {"code": "404", "message": "Resource not found"}}


# --- faults -------------------------------------------------------------------------------------


def request_for(fake: FakeUpstream, stream: bool) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and body of a minimal chat request for any fake."""
    if isinstance(fake, FakeGemini):
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url = f"{fake.url}/v1beta/models/g:{action}"
        return url, {"x-goog-api-key": fake.key}, {"contents": [{"parts": [{"text": "hi"}]}]}
    body: dict[str, Any] = {"model": "m", "messages": USER, "stream": stream, "max_tokens": 50}
    if isinstance(fake, FakeAnthropic):
        headers = {"x-api-key": fake.key, "anthropic-version": "2023-06-01"}
        return fake.url + "/v1/messages", headers, body
    if isinstance(fake, FakeAzure):
        url = fake.url + "/openai/deployments/d/chat/completions?api-version=2024-10-21"
        return url, {"api-key": fake.key}, body
    return fake.url + "/v1/chat/completions", {"Authorization": f"Bearer {fake.key}"}, body


@pytest.fixture(params=[FakeOpenAI, FakeAnthropic, FakeGemini, FakeAzure])
async def any_fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeUpstream]:
    async with request.param() as fake:
        yield fake


async def test_fault_status_envelopes(any_fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    url, headers, body = request_for(any_fake, False)
    any_fake.inject(Fault("status", status=503, message="down", times=2))
    for _ in range(2):
        async with http.post(url, json=body, headers=headers) as r:
            assert r.status == 503
            err = await r.json()
        assert err["error"]["message"] == "down"
        if isinstance(any_fake, FakeAnthropic):
            assert err["type"] == "error" and err["error"]["type"] == "api_error"
        elif isinstance(any_fake, FakeGemini):
            assert err["error"]["status"] == "UNAVAILABLE"
        else:
            assert err["error"]["type"] == "server_error"
    assert any_fake.pending_faults == []
    async with http.post(url, json=body, headers=headers) as r:
        assert r.status == 200


async def test_fault_hang(any_fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    url, headers, body = request_for(any_fake, False)
    any_fake.inject(Fault("hang", seconds=5))
    with pytest.raises(TimeoutError):
        async with http.post(
            url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=0.2)
        ):
            pass
    any_fake.inject(Fault("hang", seconds=0.15))
    start = time.monotonic()
    async with http.post(url, json=body, headers=headers) as r:
        assert r.status == 200
    assert time.monotonic() - start >= 0.15


async def test_fault_stall(any_fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    url, headers, body = request_for(any_fake, True)
    any_fake.inject(Fault("stall", after_chunks=2, seconds=0.3))
    arrivals: list[float] = []
    async with http.post(url, json=body, headers=headers) as r:
        buf = b""
        async for chunk in r.content.iter_any():
            buf += chunk
            while b"\n\n" in buf:
                _, buf = buf.split(b"\n\n", 1)
                arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) > 3 and gaps[1] >= 0.25
    assert max(gaps[:1] + gaps[2:]) < 0.2


async def test_fault_reset(any_fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    url, headers, body = request_for(any_fake, True)
    any_fake.inject(Fault("reset", after_chunks=2))
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(url, json=body, headers=headers) as r:
            async for chunk in r.content.iter_any():
                received += chunk
    assert received.count(b"data: ") == 2
    url, headers, body = request_for(any_fake, False)
    any_fake.inject(Fault("reset"))
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.post(url, json=body, headers=headers) as r:
            await r.read()
    async with http.post(url, json=body, headers=headers) as r:
        assert r.status == 200


async def test_fault_malformed(any_fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    url, headers, body = request_for(any_fake, False)
    any_fake.inject(Fault("malformed"))
    async with http.post(url, json=body, headers=headers) as r:
        assert r.status == 200 and r.content_type == "application/json"
        assert await r.read() == b'{"id": "broken", '
    url, headers, body = request_for(any_fake, True)
    any_fake.inject(Fault("malformed"))
    async with http.post(url, json=body, headers=headers) as r:
        events = sse_events(await r.text())
    assert len(events) == 2 and events[1][1] == "{not json"
    orjson.loads(events[0][1])


async def test_fault_garbage_stream(any_fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    url, headers, body = request_for(any_fake, True)
    any_fake.inject(Fault("garbage_stream", after_chunks=3))
    async with http.post(url, json=body, headers=headers) as r:
        assert r.status == 200
        events = sse_events(await r.text())
    assert [d for _, d in events[3:]] == ["<html>oops</html>"]
    assert all(orjson.loads(d) for _, d in events[:3])


async def test_sdk_sees_faults(oai: FakeOpenAI, ant: FakeAnthropic) -> None:
    oai.inject(Fault("reset", after_chunks=3))
    with pytest.raises(openai.APIError):
        stream = await oai_client(oai).chat.completions.create(
            model="m", messages=USER, stream=True
        )
        async for _ in stream:
            pass
    oai.inject(Fault("hang", seconds=5))
    with pytest.raises(openai.APITimeoutError):
        await oai_client(oai, timeout=0.2).chat.completions.create(model="m", messages=USER)
    ant.inject(Fault("malformed"))
    with pytest.raises(ValueError):
        async with ant_client(ant).messages.stream(model="c", max_tokens=9, messages=USER) as s:
            await s.get_final_message()


# --- standalone ---------------------------------------------------------------------------------


async def test_standalone_main(http: aiohttp.ClientSession) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes", "openai", "--key", "k1",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert line.startswith("READY http://127.0.0.1:")
        url = line.split()[1]
        body = {"model": "m", "messages": USER}
        headers = {"Authorization": "Bearer k1"}
        async with http.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
            assert (await r.json())["choices"][0]["message"]["content"].endswith("hi there")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
