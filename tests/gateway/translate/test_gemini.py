"""OpenAI ⇄ Gemini translation, and Anthropic ⇄ Gemini through the OpenAI hub."""

from __future__ import annotations

import base64
import re
import struct

import orjson
import pytest

from gateway.errors import InvalidRequest, UpstreamError
from gateway.translate.anthropic import (
    OpenAIToAnthropicStream,
    anthropic_request_to_openai,
    openai_response_to_anthropic,
)
from gateway.translate.gemini import (
    GeminiToOpenAIStream,
    gemini_embeddings_to_openai,
    gemini_response_to_openai,
    json_schema_to_gemini,
    openai_embeddings_to_gemini,
    openai_request_to_gemini,
)

CALL_ID = re.compile(r"^call_[A-Za-z0-9]{24}$")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


# ---------------------------------------------------------------------------------------------
# Requests


def test_text_request_with_system_and_generation_config() -> None:
    body = {
        "model": "gw-gemini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "Tell me a joke"}]},
        ],
        "max_completion_tokens": 256,
        "temperature": 0.7,
        "top_p": 0.95,
        "top_k": 40,
        "n": 2,
        "stop": "END",
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "user": "u",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    req = openai_request_to_gemini(body)
    assert req == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello!"}]},
            {"role": "user", "parts": [{"text": "Tell me a joke"}]},
        ],
        "generationConfig": {
            "stopSequences": ["END"],
            "maxOutputTokens": 256,
            "candidateCount": 2,
            "temperature": 0.7,
            "topP": 0.95,
            "topK": 40,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.2,
            "seed": 7,
        },
    }
    assert "model" not in req


def test_images_inline_and_file_data() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What's in these?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png?x=1"}},
                ],
            }
        ]
    }
    parts = openai_request_to_gemini(body)["contents"][0]["parts"]
    assert parts == [
        {"text": "What's in these?"},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png?x=1"}},
    ]


def _tool_conversation() -> dict:
    return {
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_p",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_r",
                        "type": "function",
                        "function": {"name": "get_forecast", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            # Results out of order: names must be recovered by id, not position.
            {"role": "tool", "tool_call_id": "call_r", "content": "rainy"},
            {"role": "tool", "tool_call_id": "call_p", "content": '{"temp": 18, "sky": "clear"}'},
            {"role": "tool", "tool_call_id": "call_p", "content": "[1, 2]"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }


def test_tool_round_trip_function_response_name_recovery() -> None:
    req = openai_request_to_gemini(_tool_conversation())
    contents = req["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    model_parts = contents[1]["parts"]
    assert model_parts[0]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    assert model_parts[1] == {"functionCall": {"name": "get_forecast", "args": {"city": "Rome"}}}
    # Unknown signature on the first call of a step: the documented validator bypass.
    assert model_parts[0]["thoughtSignature"] == "skip_thought_signature_validator"
    # Consecutive tool messages → one user content with functionResponse parts.
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_forecast", "response": {"content": "rainy"}}},
        {"functionResponse": {"name": "get_weather", "response": {"temp": 18, "sky": "clear"}}},
        {"functionResponse": {"name": "get_weather", "response": {"content": "[1, 2]"}}},
    ]
    assert req["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    decl = req["tools"][0]["functionDeclarations"][0]
    assert decl["name"] == "get_weather"
    assert decl["description"] == "Weather for a city"
    assert decl["parameters"] == {
        "type": "OBJECT",
        "properties": {
            "city": {"type": "STRING", "description": "City name"},
            "unit": {"type": "STRING", "nullable": True, "enum": ["c", "f"]},
        },
        "required": ["city"],
    }


def test_unknown_tool_call_id_is_invalid() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "call_missing", "content": "y"},
        ]
    }
    with pytest.raises(InvalidRequest) as err:
        openai_request_to_gemini(body)
    assert err.value.param == "messages"


def test_parameterless_tool_omits_parameters() -> None:
    tool = {
        "type": "function",
        "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
    }
    req = openai_request_to_gemini(
        {"messages": [{"role": "user", "content": "x"}], "tools": [tool]}
    )
    assert req["tools"] == [{"functionDeclarations": [{"name": "now"}]}]


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
    ],
)
def test_tool_choice_modes(choice, config) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL]}
    body["tool_choice"] = choice
    assert openai_request_to_gemini(body)["toolConfig"] == {"functionCallingConfig": config}


def test_response_format_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
            "kind": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "when": {"type": "string", "format": "date-time"},
            "email": {"type": "string", "format": "email"},
        },
        "required": ["name"],
        "additionalProperties": False,
        "$defs": {"tag": {"type": "string", "enum": ["a", "b"]}},
    }
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "thing", "strict": True, "schema": schema},
        },
    }
    gen = openai_request_to_gemini(body)["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert gen["responseSchema"] == {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING"},
            "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}},
            "kind": {"type": "INTEGER", "nullable": True},
            "when": {"type": "STRING", "format": "date-time"},
            "email": {"type": "STRING"},
        },
        "required": ["name"],
    }
    body["response_format"] = {"type": "json_object"}
    gen = openai_request_to_gemini(body)["generationConfig"]
    assert gen == {"responseMimeType": "application/json"}


def test_schema_conversion_edge_cases() -> None:
    assert json_schema_to_gemini({"const": "x"}) == {"type": "STRING", "enum": ["x"]}
    assert json_schema_to_gemini({"type": "number", "enum": [1, 2]}) == {"type": "NUMBER"}
    assert json_schema_to_gemini({"type": ["string", "integer"]}) == {
        "anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]
    }
    recursive = {"type": "object", "properties": {"child": {"$ref": "#"}}}
    assert json_schema_to_gemini(recursive)["type"] == "OBJECT"  # terminates


def test_thought_signature_round_trip() -> None:
    resp = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                            "thoughtSignature": "c2lnbmF0dXJl",
                        }
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    call = gemini_response_to_openai(resp, "m")["choices"][0]["message"]["tool_calls"][0]
    assert call["extra_content"] == {"google": {"thought_signature": "c2lnbmF0dXJl"}}
    plain = {k: v for k, v in call.items() if k != "extra_content"}  # a client that drops it
    body = {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": [plain]},
            {"role": "tool", "tool_call_id": plain["id"], "content": "cold"},
        ]
    }
    part = openai_request_to_gemini(body)["contents"][1]["parts"][0]
    assert part["thoughtSignature"] == "c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "x"}]}, "tools"),
        (
            {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}},
            "response_format",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
    ],
)
def test_invalid_gemini_requests(body, param) -> None:
    with pytest.raises(InvalidRequest) as err:
        openai_request_to_gemini(body)
    assert err.value.param == param


# ---------------------------------------------------------------------------------------------
# Responses

GEMINI_USAGE = {
    "promptTokenCount": 120,
    "candidatesTokenCount": 30,
    "thoughtsTokenCount": 10,
    "cachedContentTokenCount": 100,
    "totalTokenCount": 160,
}


def test_gemini_text_response_to_openai() -> None:
    resp = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "thinking...", "thought": True},
                        {"text": "Hello "},
                        {"text": "there"},
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
                "safetyRatings": [],
            }
        ],
        "usageMetadata": GEMINI_USAGE,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "abc123",
    }
    out = gemini_response_to_openai(resp, "gw-gemini")
    assert out["id"] == "chatcmpl-abc123"
    assert out["object"] == "chat.completion"
    assert out["model"] == "gw-gemini"
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert out["usage"] == {
        "prompt_tokens": 120,
        "completion_tokens": 40,
        "total_tokens": 160,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 10},
    }


def test_gemini_function_call_response_to_openai() -> None:
    resp = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5},
    }
    out = gemini_response_to_openai(resp, "m")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert len(calls) == 2
    assert all(CALL_ID.match(c["id"]) for c in calls)
    assert calls[0]["id"] != calls[1]["id"]
    assert calls[0]["type"] == "function"
    assert [orjson.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]


def test_gemini_multiple_candidates_and_finish_reasons() -> None:
    resp = {
        "candidates": [
            {"content": {"parts": [{"text": "a"}]}, "finishReason": "MAX_TOKENS", "index": 0},
            {"finishReason": "SAFETY", "index": 1},
        ]
    }
    out = gemini_response_to_openai(resp, "m")
    assert [c["finish_reason"] for c in out["choices"]] == ["length", "content_filter"]
    assert out["choices"][1]["message"]["content"] == ""
    assert out["usage"]["prompt_tokens"] == 0


def test_gemini_blocked_prompt() -> None:
    out = gemini_response_to_openai({"promptFeedback": {"blockReason": "SAFETY"}}, "m")
    assert out["choices"][0]["finish_reason"] == "content_filter"


# ---------------------------------------------------------------------------------------------
# Streams

GEMINI_STREAM = [
    {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "The "}]}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1",
    },
    {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "answer"}]}, "index": 0}],
        "responseId": "resp-1",
    },
    {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "."}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 8,
            "candidatesTokenCount": 3,
            "totalTokenCount": 11,
            "cachedContentTokenCount": 4,
        },
        "responseId": "resp-1",
    },
]


def test_gemini_text_stream_to_openai() -> None:
    stream = GeminiToOpenAIStream("gw-gemini", include_usage=True)
    chunks = [c for event in GEMINI_STREAM for c in stream.feed(event)] + stream.finish()
    assert {c["id"] for c in chunks} == {"chatcmpl-resp-1"}
    assert len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    body = chunks[:-1]
    assert all(c["usage"] is None for c in body)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in body) == "The answer."
    assert [c["choices"][0]["finish_reason"] for c in body][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 8,
        "completion_tokens": 3,
        "total_tokens": 11,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    assert stream.usage.output_tokens == 3
    assert stream.usage.cached_tokens == 4


def test_gemini_function_call_stream_to_openai() -> None:
    stream = GeminiToOpenAIStream("m", include_usage=False)
    event = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "a", "args": {"x": 1}},
                            "thoughtSignature": "U0lH",
                        },
                        {"functionCall": {"name": "b", "args": {}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2},
    }
    chunks = stream.feed(event) + stream.finish()
    assert all("usage" not in c for c in chunks)
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert [tc["index"] for tc in calls] == [0, 1]
    assert all(CALL_ID.match(tc["id"]) for tc in calls)
    assert orjson.loads(calls[0]["function"]["arguments"]) == {"x": 1}
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "U0lH"}}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert stream.usage.input_tokens == 5


def test_gemini_stream_error_raises() -> None:
    stream = GeminiToOpenAIStream("m", include_usage=False)
    with pytest.raises(UpstreamError):
        stream.feed({"error": {"code": 500, "message": "internal", "status": "INTERNAL"}})


# ---------------------------------------------------------------------------------------------
# Anthropic ⇄ Gemini through the OpenAI hub


def test_anthropic_to_gemini_request_composition() -> None:
    body = {
        "model": "claude-alias",
        "max_tokens": 300,
        "system": "Be helpful.",
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"c": 1}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "5C"}],
            },
        ],
        "top_k": 20,
    }
    req = openai_request_to_gemini(anthropic_request_to_openai(body, "gemini-2.5-flash"))
    assert req["systemInstruction"] == {"parts": [{"text": "Be helpful."}]}
    assert req["generationConfig"] == {"maxOutputTokens": 300}
    assert req["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"content": "5C"}}}
    ]


def test_gemini_to_anthropic_stream_composition() -> None:
    hub = GeminiToOpenAIStream("gw", include_usage=True)
    out = OpenAIToAnthropicStream("gw")
    events = []
    feed = [
        *GEMINI_STREAM,
        {
            "candidates": [
                {"content": {"parts": [{"functionCall": {"name": "f", "args": {"k": "v"}}}]}}
            ]
        },
    ]
    for event in feed:
        for chunk in hub.feed(event):
            events.extend(out.feed(chunk))
    for chunk in hub.finish():
        events.extend(out.feed(chunk))
    events.extend(out.finish())
    names = [n for n, _ in events]
    assert names[0] == "message_start"
    assert names[-1] == "message_stop"
    tool_start = next(
        d
        for n, d in events
        if n == "content_block_start" and d["content_block"]["type"] == "tool_use"
    )
    assert CALL_ID.match(tool_start["content_block"]["id"])
    delta = events[-2][1]
    assert delta["usage"]["output_tokens"] == 3
    assert delta["usage"]["input_tokens"] == 4
    assert delta["usage"]["cache_read_input_tokens"] == 4


def test_gemini_to_anthropic_response_composition() -> None:
    resp = {
        "candidates": [
            {
                "content": {
                    "parts": [{"text": "Sure."}, {"functionCall": {"name": "f", "args": {}}}]
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 7},
    }
    msg = openai_response_to_anthropic(gemini_response_to_openai(resp, "gw"), "gw")
    assert msg["stop_reason"] == "tool_use"
    assert msg["content"][0] == {"type": "text", "text": "Sure."}
    assert msg["content"][1]["type"] == "tool_use"
    assert msg["usage"]["input_tokens"] == 50


# ---------------------------------------------------------------------------------------------
# Embeddings


def test_embeddings_request() -> None:
    req = openai_embeddings_to_gemini(
        {"model": "gw-embed", "input": ["a", "b"], "dimensions": 256}, "gemini-embedding-001"
    )
    assert req == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "a"}]},
                "outputDimensionality": 256,
            },
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "b"}]},
                "outputDimensionality": 256,
            },
        ]
    }
    single = openai_embeddings_to_gemini({"input": "hello"}, "models/text-embedding-004")
    assert single == {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}}
        ]
    }


@pytest.mark.parametrize("value", [[1, 2, 3], [[1, 2], [3]], [], None, ["a", 1]])
def test_embeddings_token_arrays_rejected(value) -> None:
    with pytest.raises(InvalidRequest) as err:
        openai_embeddings_to_gemini({"input": value}, "m")
    assert err.value.param == "input"


def test_embeddings_response_float_and_base64() -> None:
    values = [[0.5, -1.25, 3.0], [0.1, 0.2, 1e-3]]
    resp = {"embeddings": [{"values": v} for v in values]}
    out = gemini_embeddings_to_openai(resp, "gw-embed", None)
    assert out["object"] == "list"
    assert out["model"] == "gw-embed"
    assert out["usage"] == {"prompt_tokens": 0, "total_tokens": 0}
    assert out["data"][0] == {"object": "embedding", "index": 0, "embedding": values[0]}
    out = gemini_embeddings_to_openai(resp, "gw-embed", "base64")
    for item, expected in zip(out["data"], values, strict=True):
        raw = base64.b64decode(item["embedding"])
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert decoded == pytest.approx(expected, rel=1e-6)
    assert gemini_embeddings_to_openai(resp, "m", "float")["data"][1]["embedding"] == values[1]
