"""The official OpenAI SDK against the gateway, across every provider adapter."""

from __future__ import annotations

import json

import openai
import pytest

from tests.harness import CHAT_MODELS, Stack

FAKE_NAME = {"oa": "fake-openai", "an": "fake-anthropic", "gm": "fake-gemini", "az": "fake-azure"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look something up",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat(oai: openai.OpenAI, stack: Stack, model: str) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model=model,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello gateway"},
        ],
    )
    resp = raw.parse()
    assert (
        resp.choices[0].message.content == f"Hello from {FAKE_NAME[model]}! You said: hello gateway"
    )
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens == 7
    trace = raw.headers["x-request-id"]
    [row] = stack.usage_rows(trace)
    assert (row["model"], row["status"], row["estimated"]) == (model, 200, 0)
    assert row["output_tokens"] == 7 and row["input_tokens"] == resp.usage.prompt_tokens
    # The system prompt reached the provider in its own protocol's place.
    sent = stack.fake_for(model).requests[-1].body
    if model == "an":
        assert sent["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    elif model == "gm":
        assert sent["systemInstruction"]["parts"][0]["text"] == "Be brief."
    else:
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_stream(oai: openai.OpenAI, stack: Stack, model: str) -> None:
    stream = oai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "stream me"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Hello from {FAKE_NAME[model]}! You said: stream me"
    assert chunks[-1].choices and chunks[-1].choices[0].finish_reason == "stop"
    # The client did not ask for usage, so the chunk the gateway asked for is not passed on.
    assert all(c.choices for c in chunks)
    row = stack.usage_rows()[-1]
    assert row["stream"] == 1 and row["output_tokens"] == 7 and row["ttft_ms"] is not None


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_stream_with_usage(oai: openai.OpenAI, model: str) -> None:
    chunks = list(
        oai.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "count me"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 7 and last.usage.prompt_tokens > 0


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_tool_round_trip(oai: openai.OpenAI, model: str, stream: bool) -> None:
    messages: list[dict] = [{"role": "user", "content": "weather in Paris"}]
    if stream:
        chunks = list(
            oai.chat.completions.create(model=model, messages=messages, tools=TOOLS, stream=True)
        )
        calls: dict[int, dict] = {}
        for c in chunks:
            for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                entry = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                entry["id"] = tc.id or entry["id"]
                entry["name"] = (tc.function.name if tc.function else None) or entry["name"]
                entry["arguments"] += (tc.function.arguments if tc.function else None) or ""
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
        call_id, name, args = calls[0]["id"], calls[0]["name"], calls[0]["arguments"]
    else:
        resp = oai.chat.completions.create(model=model, messages=messages, tools=TOOLS)
        assert resp.choices[0].finish_reason == "tool_calls"
        tc = resp.choices[0].message.tool_calls[0]
        call_id, name, args = tc.id, tc.function.name, tc.function.arguments
    assert name == "lookup" and json.loads(args) == {"query": "weather in Paris"}
    assert call_id
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
    ]
    answer = oai.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    expected = '{"content":"sunny"}' if model == "gm" else "sunny"
    assert answer.choices[0].message.content == f"Tool said: {expected}"


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_stop_and_max_tokens(oai: openai.OpenAI, model: str) -> None:
    cut = oai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "long"}], max_tokens=2
    )
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == "Hello from"
    stopped = oai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "x"}], stop=["You said"]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content.startswith("Hello from")
    assert "You said" not in stopped.choices[0].message.content


def test_openai_parameters_pass_through(oai: openai.OpenAI, stack: Stack) -> None:
    resp = oai.chat.completions.create(
        model="oa",
        messages=[{"role": "user", "content": "params"}],
        n=2,
        seed=7,
        logprobs=True,
        user="alice",
        response_format={"type": "json_object"},
        tool_choice="none",
        tools=TOOLS,
    )
    assert len(resp.choices) == 2
    assert resp.choices[0].logprobs is not None
    assert json.loads(resp.choices[0].message.content)["reply"].startswith("Hello from")
    sent = stack.fakes["openai"].requests[-1].body
    assert sent["model"] == "gpt-4o-mini"
    assert (sent["n"], sent["seed"], sent["user"], sent["tool_choice"]) == (2, 7, "alice", "none")
    headers = stack.fakes["openai"].requests[-1].headers
    assert not any(h.lower().startswith("x-stainless") for h in headers)
    assert headers["authorization"] == "Bearer " + stack.fakes["openai"].key


def test_cached_tokens_are_counted(oai: openai.OpenAI, stack: Stack) -> None:
    for name in ("openai", "anthropic"):
        stack.fakes[name].cached_tokens = 2
    for model in ("oa", "an"):
        raw = oai.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "cache"}]
        )
        [row] = stack.usage_rows(raw.headers["x-request-id"])
        # Cached tokens are part of the input (Anthropic reports them apart; OpenAI within).
        assert (row["cached_tokens"], row["input_tokens"]) == (2, 2)
        assert raw.parse().usage.prompt_tokens == 2


def test_legacy_completions(oai: openai.OpenAI) -> None:
    for model in ("oa", "an", "gm", "az"):
        resp = oai.completions.create(model=model, prompt="complete me", max_tokens=50)
        assert resp.object == "text_completion"
        assert resp.choices[0].text.endswith("You said: complete me")
        text = "".join(
            c.choices[0].text
            for c in oai.completions.create(
                model=model, prompt="stream me", max_tokens=50, stream=True
            )
            if c.choices
        )
        assert text.endswith("You said: stream me")


@pytest.mark.parametrize("model", ["oa-embed", "gm-embed", "az-embed"])
def test_embeddings(oai: openai.OpenAI, model: str) -> None:
    # The SDK asks for base64 by default and decodes it itself.
    resp = oai.embeddings.create(model=model, input=["one", "two"])
    assert [d.index for d in resp.data] == [0, 1]
    assert len(resp.data[0].embedding) == 8
    assert resp.data[0].embedding != resp.data[1].embedding
    floats = oai.embeddings.create(model=model, input="one", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(resp.data[0].embedding, rel=1e-6)


def test_embeddings_on_anthropic_is_a_clear_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oai.embeddings.create(model="an", input="x")
    assert "no embeddings API" in exc.value.message


def test_models(oai: openai.OpenAI, stack: Stack) -> None:
    ids = [m.id for m in oai.models.list()]
    assert ids == sorted(stack.gateway.routes)  # models and routes
    assert oai.models.retrieve("oa").id == "oa"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("nope")
