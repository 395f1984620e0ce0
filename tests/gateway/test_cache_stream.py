"""A streamed cache miss fills the cache: the next identical request, streamed or not, is a hit
with the same answer, and the provider sees no second request. Driven by the official SDKs
through the gateway against the fake providers; a stream cut midway is never kept."""

from __future__ import annotations

import uuid
from typing import Any

import anthropic
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

from gateway.cache import cache_key, eligibility
from tests.fakes import Fault
from tests.harness import Stack

OPENAI_TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look something up",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]
ANTHROPIC_TOOLS: Any = [
    {
        "name": "lookup",
        "description": "Look something up",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]

# The Anthropic SDK (2.14) has no `temperature` argument; the API still takes it.
DETERMINISTIC = {"temperature": 0}


def prompt(what: str) -> Any:
    """A prompt no other test asks (the cache outlives each test in the shared stack)."""
    return [{"role": "user", "content": f"{what} {uuid.uuid4().hex}"}]


def oai_stream(oai: openai.OpenAI, model: str, messages: Any, **kw: Any) -> tuple[Any, Any]:
    """(response headers, the completion the SDK's own accumulator makes of the chunks)."""
    with oai.chat.completions.with_streaming_response.create(
        model=model, messages=messages, temperature=0, stream=True, **kw
    ) as resp:
        state: ChatCompletionStreamState[Any] = ChatCompletionStreamState(
            input_tools=kw.get("tools", openai.omit)
        )
        for chunk in resp.parse():
            state.handle_chunk(chunk)
        return resp.headers, state.get_final_completion()


def oai_whole(oai: openai.OpenAI, model: str, messages: Any, **kw: Any) -> tuple[Any, Any]:
    raw = oai.chat.completions.with_raw_response.create(
        model=model, messages=messages, temperature=0, **kw
    )
    return raw.headers, raw.parse()


def ant_stream(ant: anthropic.Anthropic, model: str, messages: Any, **kw: Any) -> tuple[Any, Any]:
    with ant.messages.stream(
        model=model, max_tokens=100, messages=messages, extra_body=DETERMINISTIC, **kw
    ) as stream:
        "".join(stream.text_stream)
        return stream.response.headers, stream.get_final_message()


def ant_whole(ant: anthropic.Anthropic, model: str, messages: Any, **kw: Any) -> tuple[Any, Any]:
    raw = ant.messages.with_raw_response.create(
        model=model, max_tokens=100, messages=messages, extra_body=DETERMINISTIC, **kw
    )
    return raw.headers, raw.parse()


def calls_of(completion: Any) -> list[tuple[str | None, str, str]]:
    return [
        (c.id, c.function.name, c.function.arguments)
        for c in completion.choices[0].message.tool_calls or ()
    ]


@pytest.mark.parametrize(
    "model", ["oa", "an"], ids=["openai-upstream", "anthropic-upstream-translated"]
)
def test_openai_streamed_miss_serves_streamed_and_whole_hits(
    stack: Stack, oai: openai.OpenAI, model: str
) -> None:
    fake = stack.fake_for(model)
    messages = prompt("stream then hit")
    before = len(fake.requests)
    headers, first = oai_stream(oai, model, messages)
    assert headers["x-aigw-cache"] == "miss" and len(fake.requests) == before + 1
    text = first.choices[0].message.content
    assert text and "You said: stream then hit" in text

    headers, again = oai_stream(oai, model, messages)
    assert headers["x-aigw-cache"] == "hit"
    assert again.choices[0].message.content == text
    assert again.choices[0].finish_reason == first.choices[0].finish_reason == "stop"

    headers, whole = oai_whole(oai, model, messages)
    assert headers["x-aigw-cache"] == "hit"
    assert whole.choices[0].message.content == text
    assert whole.id == first.id  # the answer replayed is the one that was streamed
    # The client asked for no usage chunk; the cached answer still carries the usage.
    assert whole.usage is not None and whole.usage.completion_tokens > 0
    [row] = stack.usage_rows(headers["x-request-id"])
    assert (row["cache_hit"], row["output_tokens"]) == (1, whole.usage.completion_tokens)

    # Asking for the usage chunk changes nothing of the key: a hit, with the usage.
    headers, with_usage = oai_stream(oai, model, messages, stream_options={"include_usage": True})
    assert headers["x-aigw-cache"] == "hit"
    assert with_usage.usage is not None
    assert with_usage.usage.total_tokens == whole.usage.total_tokens
    assert len(fake.requests) == before + 1  # every hit stayed in the gateway


@pytest.mark.parametrize(
    "model", ["an", "oa"], ids=["anthropic-upstream", "openai-upstream-translated"]
)
def test_anthropic_streamed_miss_serves_streamed_and_whole_hits(
    stack: Stack, ant: anthropic.Anthropic, model: str
) -> None:
    fake = stack.fake_for(model)
    messages = prompt("anthropic stream")
    before = len(fake.requests)
    headers, first = ant_stream(ant, model, messages)
    assert headers["x-aigw-cache"] == "miss" and len(fake.requests) == before + 1
    assert first.content[0].type == "text" and "You said: anthropic stream" in first.content[0].text

    headers, again = ant_stream(ant, model, messages)
    assert headers["x-aigw-cache"] == "hit"
    assert again.model_dump() == first.model_dump()

    headers, whole = ant_whole(ant, model, messages)
    assert headers["x-aigw-cache"] == "hit"
    assert whole.model_dump() == first.model_dump()
    assert whole.usage.output_tokens > 0 and whole.stop_reason == "end_turn"
    assert len(fake.requests) == before + 1


def test_a_streamed_answer_with_usage_is_kept_with_it(stack: Stack, oai: openai.OpenAI) -> None:
    fake = stack.fakes["openai"]
    messages = prompt("usage chunk")
    before = len(fake.requests)
    _, first = oai_stream(oai, "oa", messages, stream_options={"include_usage": True})
    _, whole = oai_whole(oai, "oa", messages)
    assert first.usage is not None and whole.usage is not None
    assert whole.usage.model_dump() == first.usage.model_dump()
    assert len(fake.requests) == before + 1


def test_openai_tool_calls_round_trip(stack: Stack, oai: openai.OpenAI) -> None:
    fake = stack.fakes["openai"]
    messages = prompt("tools")
    before = len(fake.requests)
    headers, first = oai_stream(oai, "oa", messages, tools=OPENAI_TOOLS)
    assert headers["x-aigw-cache"] == "miss"
    [(call_id, name, arguments)] = calls_of(first)
    assert name == "lookup" and '"query"' in arguments and len(arguments) > 8  # in fragments
    assert first.choices[0].finish_reason == "tool_calls"

    headers, whole = oai_whole(oai, "oa", messages, tools=OPENAI_TOOLS)
    assert headers["x-aigw-cache"] == "hit"
    assert calls_of(whole) == [(call_id, name, arguments)]
    assert whole.choices[0].finish_reason == "tool_calls"
    assert whole.choices[0].message.content is None

    headers, again = oai_stream(oai, "oa", messages, tools=OPENAI_TOOLS)
    assert headers["x-aigw-cache"] == "hit"
    assert calls_of(again) == [(call_id, name, arguments)]
    assert len(fake.requests) == before + 1


def test_anthropic_tool_use_round_trip(stack: Stack, ant: anthropic.Anthropic) -> None:
    fake = stack.fakes["anthropic"]
    messages = prompt("tool use")
    before = len(fake.requests)
    headers, first = ant_stream(ant, "an", messages, tools=ANTHROPIC_TOOLS)
    assert headers["x-aigw-cache"] == "miss"
    [block] = first.content
    assert block.type == "tool_use" and block.input == {"query": messages[0]["content"]}

    headers, whole = ant_whole(ant, "an", messages, tools=ANTHROPIC_TOOLS)
    assert headers["x-aigw-cache"] == "hit"
    assert whole.model_dump() == first.model_dump()
    assert len(fake.requests) == before + 1


def test_a_legacy_completion_stream_fills_the_cache(stack: Stack, oai: openai.OpenAI) -> None:
    fake = stack.fakes["openai"]
    text = f"legacy {uuid.uuid4().hex}"
    before = len(fake.requests)
    streamed = oai.completions.create(model="oa", prompt=text, temperature=0, stream=True)
    said = "".join(c.choices[0].text for c in streamed if c.choices)
    raw = oai.completions.with_raw_response.create(model="oa", prompt=text, temperature=0)
    assert raw.headers["x-aigw-cache"] == "hit"
    assert raw.parse().choices[0].text == said and said
    assert len(fake.requests) == before + 1


@pytest.mark.parametrize("model", ["oa", "an"])
@pytest.mark.parametrize("kind", ["reset", "stall"])
def test_a_stream_cut_midway_is_not_kept(
    stack: Stack, oai: openai.OpenAI, model: str, kind: str
) -> None:
    fake = stack.fake_for(model)
    messages = prompt("cut")
    before = len(fake.requests)
    # A reset cuts the connection; a stall outlasts the stack's 1 s idle timeout.
    fake.inject(Fault(kind, after_chunks=3, seconds=3))  # type: ignore[arg-type]
    got = []
    with pytest.raises(openai.APIError):
        for chunk in oai.chat.completions.create(
            model=model, messages=messages, temperature=0, stream=True
        ):
            got.append(chunk)
    assert got  # the stream had begun: the error came as an event
    headers, whole = oai_whole(oai, model, messages)
    assert headers["x-aigw-cache"] == "miss" and len(fake.requests) == before + 2
    assert whole.choices[0].finish_reason == "stop"
    # That whole answer is kept: the next ask, streamed, is a hit.
    headers, again = oai_stream(oai, model, messages)
    assert headers["x-aigw-cache"] == "hit"
    assert again.choices[0].message.content == whole.choices[0].message.content
    assert len(fake.requests) == before + 2


def test_an_anthropic_stream_cut_midway_is_not_kept(stack: Stack, ant: anthropic.Anthropic) -> None:
    fake = stack.fakes["anthropic"]
    messages = prompt("anthropic cut")
    before = len(fake.requests)
    fake.inject(Fault("reset", after_chunks=4))
    with pytest.raises(anthropic.APIStatusError):
        ant_stream(ant, "an", messages)
    headers, _ = ant_stream(ant, "an", messages)
    assert headers["x-aigw-cache"] == "miss" and len(fake.requests) == before + 2


def test_a_sampled_or_no_store_stream_is_not_kept(stack: Stack, oai: openai.OpenAI) -> None:
    fake = stack.fakes["openai"]
    messages = prompt("not kept")
    before = len(fake.requests)
    list(oai.chat.completions.create(model="oa", messages=messages, stream=True))  # sampled
    oai_stream(oai, "oa", messages, extra_headers={"x-aigw-cache": "no-store"})
    headers, _ = oai_stream(oai, "oa", messages)
    assert headers["x-aigw-cache"] == "miss" and len(fake.requests) == before + 3


def test_a_stream_is_stored_and_keyed_as_its_whole_twin() -> None:
    whole = {"messages": [{"role": "user", "content": "x"}], "temperature": 0}
    streamed = {**whole, "stream": True, "stream_options": {"include_usage": True}}
    for headers in ({}, {"x-aigw-cache": "on"}, {"x-aigw-cache": "no-store"}):
        assert eligibility(streamed, headers) == eligibility(whole, headers)
    assert (
        eligibility(streamed, {}).store
        and not eligibility(streamed, {"x-aigw-cache": "no-store"}).store
    )
    assert cache_key("s", "openai", "oa", streamed) == cache_key("s", "openai", "oa", whole)
