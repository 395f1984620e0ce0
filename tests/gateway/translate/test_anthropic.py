"""OpenAI ⇄ Anthropic translation: requests, responses and both stream directions."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import InvalidRequest, UpstreamError
from gateway.translate.anthropic import (
    AnthropicToOpenAIStream,
    OpenAIToAnthropicStream,
    anthropic_request_to_openai,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
    openai_response_to_anthropic,
)

PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQ"
    "DwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}


def _openai_tool_conversation() -> dict:
    return {
        "model": "gw-claude",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris and London, and the time?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"London"}'},
                    },
                    {
                        "id": "call_c",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "18C sunny"},
            {
                "role": "tool",
                "tool_call_id": "call_b",
                "content": [{"type": "text", "text": "12C"}],
            },
            {"role": "tool", "tool_call_id": "call_c", "content": "09:00"},
        ],
        "tools": [WEATHER_TOOL, TIME_TOOL],
        "tool_choice": "auto",
    }


# ---------------------------------------------------------------------------------------------
# OpenAI request → Anthropic request


def test_text_request_with_system_and_params() -> None:
    body = {
        "model": "gw-claude",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How are you?"},
        ],
        "max_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
        "user": "user-42",
        "stream": True,
        "stream_options": {"include_usage": True},
        "presence_penalty": 0.5,
        "seed": 1,
        "response_format": {"type": "json_object"},
    }
    req = openai_request_to_anthropic(body, "claude-sonnet-4-5")
    assert req == {
        "model": "claude-sonnet-4-5",
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How are you?"},
        ],
        "max_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop_sequences": ["END", "STOP"],
        "metadata": {"user_id": "user-42"},
        "stream": True,
    }


def test_max_tokens_default_and_completion_tokens() -> None:
    base = {"messages": [{"role": "user", "content": "x"}]}
    assert openai_request_to_anthropic(base, "m")["max_tokens"] == 4096
    assert openai_request_to_anthropic(base, "m", default_max_tokens=1000)["max_tokens"] == 1000
    body = {**base, "max_completion_tokens": 77, "max_tokens": 5}
    assert openai_request_to_anthropic(body, "m")["max_tokens"] == 77
    assert "stream" not in openai_request_to_anthropic(base, "m")
    assert openai_request_to_anthropic({**base, "stream": False}, "m")["stream"] is False


def test_stop_string_temperature_clamped() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "stop": "\n\n", "temperature": 1.7}
    req = openai_request_to_anthropic(body, "m")
    # Whitespace-only stop sequences are rejected by Anthropic; they are left out.
    assert "stop_sequences" not in req
    assert req["temperature"] == 1.0
    body = {"messages": [{"role": "user", "content": "x"}], "stop": "###"}
    assert openai_request_to_anthropic(body, "m")["stop_sequences"] == ["###"]


def test_multiple_system_messages_and_developer() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "One."},
            {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
            {"role": "user", "content": "x"},
        ]
    }
    req = openai_request_to_anthropic(body, "m")
    assert req["system"] == [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]


def test_images_data_url_and_http_url() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "low"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ]
    }
    req = openai_request_to_anthropic(body, "m")
    assert req["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_pdf_file_part_becomes_document() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {
                            "filename": "a.pdf",
                            "file_data": "data:application/pdf;base64,JVBE",
                        },
                    }
                ],
            }
        ]
    }
    block = openai_request_to_anthropic(body, "m")["messages"][0]["content"][0]
    assert block == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        "title": "a.pdf",
    }


def test_tool_round_trip_request_parallel_calls() -> None:
    req = openai_request_to_anthropic(_openai_tool_conversation(), "claude")
    assert req["system"] == "You are terse."
    assert [m["role"] for m in req["messages"]] == ["user", "assistant", "user"]
    assistant = req["messages"][1]["content"]
    assert assistant == [
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {"city": "London"}},
        {"type": "tool_use", "id": "call_c", "name": "get_time", "input": {}},
    ]
    # Three OpenAI tool messages → ONE Anthropic user message with three tool_result blocks.
    assert req["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_a", "content": "18C sunny"},
        {
            "type": "tool_result",
            "tool_use_id": "call_b",
            "content": [{"type": "text", "text": "12C"}],
        },
        {"type": "tool_result", "tool_use_id": "call_c", "content": "09:00"},
    ]
    assert req["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert req["tool_choice"] == {"type": "auto"}


def test_tool_results_then_user_text_merge_into_one_turn() -> None:
    body = _openai_tool_conversation()
    body["messages"].append({"role": "user", "content": "Summarise."})
    req = openai_request_to_anthropic(body, "m")
    last = req["messages"][-1]
    assert last["role"] == "user"
    assert [b["type"] for b in last["content"]] == ["tool_result"] * 3 + ["text"]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, None, None),
    ],
)
def test_tool_choice_mapping(choice, parallel, expected) -> None:
    body: dict = {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    req = openai_request_to_anthropic(body, "m")
    assert req.get("tool_choice") == expected


def test_final_assistant_prefill_is_right_stripped() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "Give JSON"},
            {"role": "assistant", "content": "{ "},
        ]
    }
    req = openai_request_to_anthropic(body, "m")
    assert req["messages"][-1] == {"role": "assistant", "content": "{"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "only system"}]}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "messages",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{"},
                            }
                        ],
                    }
                ]
            },
            "messages",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages"),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_preview"}],
            },
            "tools",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "functions": [{"name": "f"}]},
            "functions",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}],
                    }
                ]
            },
            "messages",
        ),
    ],
)
def test_invalid_requests(body, param) -> None:
    with pytest.raises(InvalidRequest) as err:
        openai_request_to_anthropic(body, "m")
    assert err.value.param == param
    assert err.value.status == 400


def test_n_one_is_accepted() -> None:
    req = openai_request_to_anthropic({"messages": [{"role": "user", "content": "x"}], "n": 1}, "m")
    assert "n" not in req


# ---------------------------------------------------------------------------------------------
# Anthropic response → OpenAI response


def test_anthropic_text_response_to_openai() -> None:
    resp = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "output_tokens": 6,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    out = anthropic_response_to_openai(resp, "gw-claude")
    assert out["id"] == "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL"
    assert out["object"] == "chat.completion"
    assert isinstance(out["created"], int)
    assert out["model"] == "gw-claude"
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert out["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 6,
        "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_anthropic_tool_use_response_with_cache_usage() -> None:
    resp = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 30,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 100,
        },
    }
    out = anthropic_response_to_openai(resp, "m")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking."
    calls = choice["message"]["tool_calls"]
    assert [c["id"] for c in calls] == ["toolu_1", "toolu_2"]
    assert calls[0]["type"] == "function"
    assert calls[0]["function"]["name"] == "get_weather"
    assert orjson.loads(calls[0]["function"]["arguments"]) == {"city": "Oslo"}
    assert orjson.loads(calls[1]["function"]["arguments"]) == {}
    # OpenAI prompt_tokens includes cached (and cache-written) tokens.
    assert out["usage"]["prompt_tokens"] == 115
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 100}
    assert out["usage"]["total_tokens"] == 145


def test_anthropic_tool_only_response_has_null_content() -> None:
    resp = {
        "id": "msg_1",
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": [1, 2]}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    message = anthropic_response_to_openai(resp, "m")["choices"][0]["message"]
    assert message["content"] is None


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reason_mapping(stop_reason, finish) -> None:
    resp = {"id": "m", "content": [], "stop_reason": stop_reason, "usage": {}}
    assert anthropic_response_to_openai(resp, "m")["choices"][0]["finish_reason"] == finish


# ---------------------------------------------------------------------------------------------
# Anthropic request → OpenAI request


def test_anthropic_request_to_openai_full() -> None:
    body = {
        "model": "claude-alias",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "Sys A", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "...", "signature": "s"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {"q": "y"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found x"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "found y"}],
                        "is_error": False,
                    },
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        "stop_sequences": ["###"],
        "temperature": 0.2,
        "top_p": 0.8,
        "top_k": 40,
        "metadata": {"user_id": "u-1"},
        "tools": [
            {
                "name": "lookup",
                "description": "Look up",
                "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
            }
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stream": True,
    }
    req = anthropic_request_to_openai(body, "gpt-4o")
    assert req["model"] == "gpt-4o"
    assert req["stream"] is True
    assert req["stream_options"] == {"include_usage": True}
    assert req["max_completion_tokens"] == 1024
    assert req["stop"] == ["###"]
    assert req["temperature"] == 0.2
    assert req["top_p"] == 0.8
    assert "top_k" not in req
    assert req["user"] == "u-1"
    assert req["tool_choice"] == "required"
    assert req["parallel_tool_calls"] is False
    assert req["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look up",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
    ]
    msgs = req["messages"]
    assert msgs[0] == {"role": "system", "content": "Sys A"}
    assert msgs[1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
        ],
    }
    assert msgs[2]["role"] == "assistant"
    assert msgs[2]["content"] == "Let me check."
    assert [c["id"] for c in msgs[2]["tool_calls"]] == ["toolu_1", "toolu_2"]
    assert orjson.loads(msgs[2]["tool_calls"][1]["function"]["arguments"]) == {"q": "y"}
    assert msgs[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "found x"}
    assert msgs[4] == {"role": "tool", "tool_call_id": "toolu_2", "content": "found y"}
    assert msgs[5] == {"role": "user", "content": "Thanks"}
    assert len(msgs) == 6


def test_anthropic_request_not_streaming_has_no_stream_options() -> None:
    body = {"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    req = anthropic_request_to_openai(body, "gpt")
    assert req == {
        "model": "gpt",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 10,
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "any"}, "required"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_anthropic_tool_choice_mapping(choice, expected) -> None:
    body = {
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": choice,
    }
    assert anthropic_request_to_openai(body, "m")["tool_choice"] == expected


def test_anthropic_server_tools_rejected() -> None:
    body = {
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
    }
    with pytest.raises(InvalidRequest) as err:
        anthropic_request_to_openai(body, "m")
    assert err.value.param == "tools"


def test_anthropic_tool_result_image_moves_to_user_message() -> None:
    body = {
        "max_tokens": 10,
        "messages": [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "text", "text": "screenshot:"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": "AA",
                                },
                            },
                        ],
                    }
                ],
            },
        ],
    }
    msgs = anthropic_request_to_openai(body, "m")["messages"]
    assert msgs[1] == {"role": "tool", "tool_call_id": "t1", "content": "screenshot:"}
    assert msgs[2] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}],
    }


# ---------------------------------------------------------------------------------------------
# OpenAI response → Anthropic response


def test_openai_response_to_anthropic_text_with_cache() -> None:
    resp = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi there", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 5,
            "total_tokens": 1205,
            "prompt_tokens_details": {"cached_tokens": 1024},
        },
    }
    out = openai_response_to_anthropic(resp, "gw-model")
    assert out == {
        "id": "msg_abc123",
        "type": "message",
        "role": "assistant",
        "model": "gw-model",
        "content": [{"type": "text", "text": "Hi there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            # Anthropic input_tokens EXCLUDES cache reads.
            "input_tokens": 176,
            "output_tokens": 5,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 1024,
        },
    }


def test_openai_response_to_anthropic_tool_calls() -> None:
    resp = {
        "id": "chatcmpl-1",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": "{}"},
                        },
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
    }
    out = openai_response_to_anthropic(resp, "m")
    assert out["stop_reason"] == "tool_use"
    assert out["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Rome"}},
        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
    ]
    assert out["usage"]["input_tokens"] == 50
    assert out["usage"]["cache_read_input_tokens"] == 0


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_openai_finish_to_stop_reason(finish, stop_reason) -> None:
    resp = {"id": "x", "choices": [{"message": {"content": "a"}, "finish_reason": finish}]}
    assert openai_response_to_anthropic(resp, "m")["stop_reason"] == stop_reason


def test_openai_truncated_tool_arguments_become_empty_input() -> None:
    resp = {
        "id": "x",
        "choices": [
            {
                "message": {
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a'},
                        }
                    ],
                },
                "finish_reason": "length",
            }
        ],
    }
    out = openai_response_to_anthropic(resp, "m")
    assert out["content"][0]["input"] == {}
    assert out["stop_reason"] == "max_tokens"


# ---------------------------------------------------------------------------------------------
# Anthropic stream → OpenAI chunks

ANTHROPIC_TEXT_EVENTS = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_stream1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-sonnet-4-5",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 25,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 200,
                    "output_tokens": 1,
                },
            },
        },
    ),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 15},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]


def _run_anthropic_stream(
    events, include_usage: bool
) -> tuple[list[dict], AnthropicToOpenAIStream]:
    stream = AnthropicToOpenAIStream("gw-claude", include_usage)
    chunks: list[dict] = []
    for event, data in events:
        chunks.extend(stream.feed(event, data))
    chunks.extend(stream.finish())
    return chunks, stream


def test_anthropic_text_stream_to_openai_with_usage() -> None:
    chunks, stream = _run_anthropic_stream(ANTHROPIC_TEXT_EVENTS, include_usage=True)
    assert len({c["id"] for c in chunks}) == 1
    assert len({c["created"] for c in chunks}) == 1
    assert chunks[0]["id"] == "chatcmpl-msg_stream1"
    for chunk in chunks[:-1]:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "gw-claude"
        assert chunk["usage"] is None
        assert set(chunk["choices"][0]) == {"index", "delta", "logprobs", "finish_reason"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text == "Hello"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks[:-1]]
    assert finishes[-1] == "stop"
    assert finishes.count("stop") == 1
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"] == {
        "prompt_tokens": 225,
        "completion_tokens": 15,
        "total_tokens": 240,
        "prompt_tokens_details": {"cached_tokens": 200},
    }
    assert stream.usage.input_tokens == 225
    assert stream.usage.output_tokens == 15
    assert stream.usage.cached_tokens == 200
    assert stream.usage.reported


def test_anthropic_stream_without_include_usage() -> None:
    chunks, stream = _run_anthropic_stream(ANTHROPIC_TEXT_EVENTS, include_usage=False)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert stream.usage.output_tokens == 15


def _tool_block_events() -> list[tuple[str, dict]]:
    events = [ANTHROPIC_TEXT_EVENTS[0]]
    events.append(
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
    )
    events.append(
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Checking both."},
            },
        )
    )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    for index, (tool_id, city) in enumerate((("toolu_A", "Paris"), ("toolu_B", "Lima")), start=1):
        events.append(
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {
                        "type": "tool_use",
                        "id": tool_id,
                        "name": "get_weather",
                        "input": {},
                    },
                },
            )
        )
        for fragment in ("", '{"city": ', f'"{city}"}}'):
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": fragment},
                    },
                )
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 89},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def test_anthropic_tool_stream_to_openai_parallel_calls() -> None:
    chunks, _ = _run_anthropic_stream(_tool_block_events(), include_usage=False)
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for tc in chunk["choices"][0]["delta"].get("tool_calls") or ():
            entry = calls.setdefault(tc["index"], {"id": None, "name": None, "arguments": ""})
            if tc.get("id"):
                entry["id"] = tc["id"]
                assert tc["type"] == "function"
            fn = tc.get("function") or {}
            if fn.get("name"):
                entry["name"] = fn["name"]
            entry["arguments"] += fn.get("arguments") or ""
    # Tool indexes count tool calls (0, 1), not content blocks (1, 2).
    assert sorted(calls) == [0, 1]
    assert calls[0]["id"] == "toolu_A"
    assert orjson.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert calls[1]["id"] == "toolu_B"
    assert orjson.loads(calls[1]["arguments"]) == {"city": "Lima"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_anthropic_error_event_raises() -> None:
    stream = AnthropicToOpenAIStream("m", True)
    stream.feed(*ANTHROPIC_TEXT_EVENTS[0])
    with pytest.raises(UpstreamError) as err:
        stream.feed(
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        )
    assert err.value.message == "Overloaded"


def test_anthropic_stream_ignores_thinking_and_unknown_events() -> None:
    stream = AnthropicToOpenAIStream("m", False)
    stream.feed(*ANTHROPIC_TEXT_EVENTS[0])
    start = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": ""},
    }
    assert stream.feed("content_block_start", start) == []
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "..."},
    }
    assert stream.feed("content_block_delta", delta) == []
    assert stream.feed("something_new", {"type": "something_new"}) == []


# ---------------------------------------------------------------------------------------------
# OpenAI chunks → Anthropic stream


def _chunk(delta: dict, finish=None, usage_null: bool = True) -> dict:
    chunk = {
        "id": "chatcmpl-xyz",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage_null:
        chunk["usage"] = None
    return chunk


USAGE_CHUNK = {
    "id": "chatcmpl-xyz",
    "object": "chat.completion.chunk",
    "created": 1700000000,
    "model": "gpt-4o",
    "choices": [],
    "usage": {
        "prompt_tokens": 40,
        "completion_tokens": 12,
        "total_tokens": 52,
        "prompt_tokens_details": {"cached_tokens": 32},
    },
}


def _run_openai_stream(chunks) -> tuple[list[tuple[str, dict]], OpenAIToAnthropicStream]:
    stream = OpenAIToAnthropicStream("gw-model")
    events: list[tuple[str, dict]] = []
    for chunk in chunks:
        events.extend(stream.feed(chunk))
    events.extend(stream.finish())
    return events, stream


def _check_event_shapes(events: list[tuple[str, dict]]) -> None:
    for name, data in events:
        assert data["type"] == name
    assert events[0][0] == "message_start"
    assert events[-1][0] == "message_stop"
    assert events[-2][0] == "message_delta"
    open_block = None
    for name, data in events:
        if name == "content_block_start":
            assert open_block is None
            open_block = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_block
        elif name == "content_block_stop":
            assert data["index"] == open_block
            open_block = None
    assert open_block is None


def test_openai_text_stream_to_anthropic() -> None:
    chunks = [
        _chunk({"role": "assistant", "content": "", "refusal": None}),
        _chunk({"content": "Hello"}),
        _chunk({"content": " world"}),
        _chunk({}, "stop"),
        USAGE_CHUNK,
    ]
    events, stream = _run_openai_stream(chunks)
    _check_event_shapes(events)
    start = events[0][1]["message"]
    assert start["id"] == "msg_xyz"
    assert start["model"] == "gw-model"
    assert start["role"] == "assistant"
    assert start["content"] == []
    assert start["usage"] == {"input_tokens": 0, "output_tokens": 0}
    names = [e[0] for e in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    assert events[2][1]["delta"] == {"type": "text_delta", "text": "Hello"}
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 12
    assert delta["usage"]["input_tokens"] == 8
    assert delta["usage"]["cache_read_input_tokens"] == 32
    assert stream.usage.input_tokens == 40
    assert stream.usage.cached_tokens == 32


def test_openai_parallel_tool_stream_to_anthropic() -> None:
    chunks = [
        _chunk({"role": "assistant", "content": None}),
        _chunk({"content": "Let me look."}),
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Bergen"}'},
                    }
                ]
            }
        ),
        _chunk({}, "tool_calls"),
        USAGE_CHUNK,
    ]
    events, _ = _run_openai_stream(chunks)
    _check_event_shapes(events)
    starts = [d for n, d in events if n == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2]
    assert starts[1]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "get_weather",
        "input": {},
    }
    assert starts[2]["content_block"]["id"] == "call_2"
    args: dict[int, str] = {}
    for name, data in events:
        if name == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            args[data["index"]] = args.get(data["index"], "") + data["delta"]["partial_json"]
    assert orjson.loads(args[1]) == {"city": "Oslo"}
    assert orjson.loads(args[2]) == {"city": "Bergen"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_openai_stream_repeated_ids_do_not_open_new_blocks() -> None:
    # Some OpenAI-compatible servers repeat the id and name in every fragment.
    call = {"index": 0, "id": "call_1", "type": "function"}
    chunks = [
        _chunk({"tool_calls": [{**call, "function": {"name": "f", "arguments": '{"a"'}}]}),
        _chunk({"tool_calls": [{**call, "function": {"name": "f", "arguments": ": 1}"}}]}),
        _chunk({}, "tool_calls"),
    ]
    events, _ = _run_openai_stream(chunks)
    _check_event_shapes(events)
    assert sum(1 for n, _ in events if n == "content_block_start") == 1


def test_openai_stream_length_and_empty_stream() -> None:
    events, _ = _run_openai_stream([_chunk({"content": "abc"}, "length")])
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    events, _ = _run_openai_stream([])
    _check_event_shapes(events)
    assert [n for n, _ in events] == ["message_start", "message_delta", "message_stop"]


def test_openai_stream_error_chunk_raises() -> None:
    stream = OpenAIToAnthropicStream("m")
    with pytest.raises(UpstreamError):
        stream.feed({"error": {"message": "boom", "type": "server_error"}})
