"""Legacy completions served by a chat upstream."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRequest
from gateway.translate.completions import (
    chat_chunk_to_completion,
    chat_response_to_completion,
    completion_request_to_chat,
)


def test_request_carries_parameters() -> None:
    body = {
        "model": "gw-chat",
        "prompt": "Once upon a time",
        "max_tokens": 50,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["\n"],
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u1",
        "seed": 3,
        "best_of": 1,
        "logprobs": None,
    }
    req = completion_request_to_chat(body)
    assert req == {
        "model": "gw-chat",
        "messages": [{"role": "user", "content": "Once upon a time"}],
        "max_tokens": 50,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["\n"],
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u1",
        "seed": 3,
    }


def test_request_single_item_list_and_default_max_tokens() -> None:
    req = completion_request_to_chat({"prompt": ["Say hi"]})
    assert req["messages"] == [{"role": "user", "content": "Say hi"}]
    assert req["max_tokens"] == 16  # the legacy API's documented default


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": [[1, 2]]}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({}, "prompt"),
        ({"prompt": "x", "echo": True}, "echo"),
        ({"prompt": "x", "suffix": "end"}, "suffix"),
    ],
)
def test_request_rejects(body, param) -> None:
    with pytest.raises(InvalidRequest) as err:
        completion_request_to_chat(body)
    assert err.value.param == param


def test_response_to_completion() -> None:
    resp = {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "there was a cat."},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9},
    }
    assert chat_response_to_completion(resp) == {
        "id": "cmpl-123",
        "object": "text_completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {"text": "there was a cat.", "index": 0, "logprobs": None, "finish_reason": "length"}
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9},
    }


def test_chunks_to_completion() -> None:
    base = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 5, "model": "m"}
    first = {
        **base,
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        ],
        "usage": None,
    }
    text = {**base, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {
        **base,
        "choices": [],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    out = [chat_chunk_to_completion(c) for c in (first, text, last, usage)]
    assert all(o["object"] == "text_completion" and o["id"] == "cmpl-9" for o in out)
    assert out[0]["choices"][0] == {"text": "", "index": 0, "logprobs": None, "finish_reason": None}
    assert out[0]["usage"] is None
    assert out[1]["choices"][0]["text"] == "Hi"
    assert "usage" not in out[1]
    assert out[2]["choices"][0]["finish_reason"] == "stop"
    assert out[3]["choices"] == []
    assert out[3]["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
