"""The official Anthropic SDK against the gateway, across every provider adapter."""

from __future__ import annotations

import anthropic
import pytest

from tests.harness import CHAT_MODELS, Stack

FAKE_NAME = {"oa": "fake-openai", "an": "fake-anthropic", "gm": "fake-gemini", "az": "fake-azure"}
TOOLS = [
    {
        "name": "lookup",
        "description": "Look something up",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_messages(ant: anthropic.Anthropic, stack: Stack, model: str) -> None:
    raw = ant.messages.with_raw_response.create(
        model=model,
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "hello gateway"}],
    )
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].type == "text"
    assert msg.content[0].text == f"Hello from {FAKE_NAME[model]}! You said: hello gateway"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == 7 and msg.usage.input_tokens > 0
    assert raw.headers["request-id"] == raw.headers["x-request-id"]
    [row] = stack.usage_rows(raw.headers["request-id"])
    assert (row["api"], row["model"], row["status"]) == ("anthropic", model, 200)
    sent = stack.fake_for(model).requests[-1].body
    if model == "oa" or model == "az":
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 100
    elif model == "gm":
        assert sent["systemInstruction"]["parts"][0]["text"] == "Be brief."
        assert sent["generationConfig"]["maxOutputTokens"] == 100
    else:
        assert sent["system"] == "Be brief." and sent["model"] == "claude-sonnet-4-5"


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_messages_stream(ant: anthropic.Anthropic, stack: Stack, model: str) -> None:
    with ant.messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "stream me"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == f"Hello from {FAKE_NAME[model]}! You said: stream me"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 7
    row = stack.usage_rows()[-1]
    assert row["stream"] == 1 and row["output_tokens"] == 7 and row["input_tokens"] > 0


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_round_trip(ant: anthropic.Anthropic, model: str, stream: bool) -> None:
    messages: list[dict] = [{"role": "user", "content": "weather in Paris"}]
    if stream:
        with ant.messages.stream(model=model, max_tokens=100, messages=messages, tools=TOOLS) as s:
            msg = s.get_final_message()
    else:
        msg = ant.messages.create(model=model, max_tokens=100, messages=messages, tools=TOOLS)
    assert msg.stop_reason == "tool_use"
    [use] = [b for b in msg.content if b.type == "tool_use"]
    assert use.name == "lookup" and use.input == {"query": "weather in Paris"}
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
        },
    ]
    answer = ant.messages.create(model=model, max_tokens=100, messages=messages, tools=TOOLS)
    expected = '{"content":"sunny"}' if model == "gm" else "sunny"
    assert answer.content[0].text == f"Tool said: {expected}"


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_stop_sequences_and_max_tokens(ant: anthropic.Anthropic, model: str) -> None:
    cut = ant.messages.create(
        model=model, max_tokens=2, messages=[{"role": "user", "content": "long"}]
    )
    assert cut.stop_reason == "max_tokens" and cut.content[0].text == "Hello from"
    stopped = ant.messages.create(
        model=model,
        max_tokens=100,
        stop_sequences=["You said"],
        messages=[{"role": "user", "content": "x"}],
    )
    assert stopped.stop_reason in ("stop_sequence", "end_turn")
    assert "You said" not in stopped.content[0].text
    if model == "an":
        assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "You said"


def test_image_block_reaches_every_protocol(ant: anthropic.Anthropic, stack: Stack) -> None:
    image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    for model in CHAT_MODELS:
        ant.messages.create(
            model=model,
            max_tokens=10,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": image},
                        {"type": "text", "text": "what is this"},
                    ],
                }
            ],
        )
        sent = stack.fake_for(model).requests[-1].body
        if model == "an":
            assert sent["messages"][0]["content"][0]["source"] == image
        elif model == "gm":
            part = sent["contents"][0]["parts"][0]["inlineData"]
            assert part == {"mimeType": "image/png", "data": "iVBORw0KGgo="}
        else:
            url = sent["messages"][0]["content"][0]["image_url"]["url"]
            assert url == "data:image/png;base64,iVBORw0KGgo="


def test_models_in_anthropic_shape(ant: anthropic.Anthropic, stack: Stack) -> None:
    page = ant.models.list()
    assert [m.id for m in page.data] == sorted(stack.gateway.routes)  # models and routes
    assert page.data[0].type == "model"
    assert ant.models.retrieve("an").id == "an"
