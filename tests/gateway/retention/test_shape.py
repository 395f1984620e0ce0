"""The metadata record: the request's shape, and never any text a client sent."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.calls import Call
from gateway.retention.shape import describe, prompt_chars
from gateway.usage import Usage

SECRET = "zebracorn"


def _call(body: dict[str, Any], api: str = "openai", endpoint: str = "chat") -> Call:
    call = Call("t1", "tp", api, endpoint, model="oa", stream=False, status=200)
    call.original_body, call.detectors = body, ("email",)
    call.usage = Usage(input_tokens=12, output_tokens=3)
    return call


def test_an_openai_chat_is_described_without_any_of_its_text() -> None:
    body: dict[str, Any] = {
        "model": "oa",
        "messages": [
            {"role": "system", "content": f"You are {SECRET}."},
            {"role": "user", "content": [{"type": "text", "text": SECRET},
                                         {"type": "image_url", "image_url": {"url": SECRET}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "lookup", "arguments": f'{{"q": "{SECRET}"}}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": SECRET},
            {"role": SECRET, "content": "x"},  # a role outside the vocabulary
        ],
        "temperature": 0.3,
        "top_p": 0.9,
        "max_completion_tokens": 100,
        "seed": 7,
        "reasoning_effort": SECRET,  # not a known word: left out
        "service_tier": "flex",
        "tools": [{"type": "function", "function": {"name": "lookup", "description": SECRET}}],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": SECRET}},
        "stop": [SECRET, "END"],
        "logit_bias": {SECRET: 1},
        "user": SECRET,
    }  # fmt: skip
    meta = describe(_call(body))
    assert SECRET not in orjson.dumps(meta).decode()
    assert meta["roles"] == ["system", "user", "assistant", "tool", "other"]
    assert meta["messages"] == 5 and meta["tool_calls"] == 1
    assert meta["parts"] == {"text": 1, "image_url": 1}
    assert meta["parameters"] == {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_completion_tokens": 100,
        "seed": 7,
        "service_tier": "flex",
        "tools": ["lookup"],
        "tool_choice": {"type": "function", "name": "lookup"},
        "response_format": "json_schema",
        "stop": 2,
        "other_fields": ["logit_bias", "user"],  # names only
    }
    assert meta["detectors"] == ["email"] and meta["status"] == 200
    assert meta["usage"] == {
        "input_tokens": 12, "output_tokens": 3, "cached_tokens": 0, "estimated": False
    }  # fmt: skip
    # Every prompt text masking scans: contents, text parts and tool call arguments.
    assert meta["prompt_chars"] == prompt_chars(body, "openai") > 4 * len(SECRET)


def test_an_anthropic_message_and_other_endpoints() -> None:
    body: dict[str, Any] = {
        "model": "an",
        "max_tokens": 10,
        "system": [{"type": "text", "text": SECRET}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": SECRET}]}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "stop_sequences": [SECRET],
    }
    meta = describe(_call(body, "anthropic", "messages"))
    assert SECRET not in orjson.dumps(meta).decode()
    assert meta["system"] is True and meta["roles"] == ["user"]
    assert meta["prompt_chars"] == 2 * len(SECRET)
    assert meta["parameters"]["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert meta["parameters"]["stop_sequences"] == 1

    embed = describe(_call({"model": "e", "input": [SECRET, SECRET]}, endpoint="embeddings"))
    assert embed["inputs"] == 2 and embed["prompt_chars"] == 2 * len(SECRET)
    legacy = describe(_call({"model": "c", "prompt": SECRET}, endpoint="completions"))
    assert legacy["prompts"] == 1 and SECRET not in orjson.dumps(legacy).decode()


def test_a_request_refused_before_its_body_was_kept_still_has_a_shape() -> None:
    call = _call({})
    call.original_body, call.status, call.error = None, 403, "sensitive_data_blocked"
    meta = describe(call)
    assert (meta["status"], meta["error"], meta["prompt_chars"]) == (
        403,
        "sensitive_data_blocked",
        0,
    )
