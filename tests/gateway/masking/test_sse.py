"""Restoring placeholders in client streams: OpenAI chunks and Anthropic events, with the
placeholders split across events and the bytes split across writes at any position."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cache.collect import collect
from gateway.masking import Restorer
from gateway.masking.sse import StreamUnmasker
from gateway.streaming import OPENAI_DONE, anthropic_frames, openai_frames

VALUES = {"[EMAIL_1]": "jane@example.com", "[PHONE_1]": '+1 "555" 0100', "[CARD_2]": "4111"}
MASKED = "Write to [EMAIL_1] or call [PHONE_1]; [EMAIL_1] again, [X_9] and [CARD_2]."
ARGS = '{"to": "[EMAIL_1]", "note": "[PHONE_1]"}'


def _pieces(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points) if b > a]


def _openai_stream(content: list[str], args: list[str]) -> bytes:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunks: list[dict[str, Any]] = [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    ]
    chunks += [{**head, "choices": [{"index": 0, "delta": {"content": p}}]} for p in content]
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "send"}}
    for n, p in enumerate(args):
        tc = {**call, "function": {**call["function"], "arguments": p}} if n == 0 else {
            "index": 0, "function": {"arguments": p}}  # fmt: skip
        chunks.append({**head, "choices": [{"index": 0, "delta": {"tool_calls": [tc]}}]})
    chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return openai_frames(chunks) + OPENAI_DONE


def _anthropic_stream(content: list[str], args: list[str]) -> bytes:
    msg = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
           "stop_reason": None, "stop_sequence": None,
           "usage": {"input_tokens": 3, "output_tokens": 1}}  # fmt: skip
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": msg})
    ]
    events.append(("content_block_start", {"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}))  # fmt: skip
    for p in content:
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": p}}))  # fmt: skip
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    tool = {"type": "tool_use", "id": "t1", "name": "send", "input": {}}
    events.append(("content_block_start", {"type": "content_block_start", "index": 1,
                   "content_block": tool}))  # fmt: skip
    for p in args:
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 1,
                       "delta": {"type": "input_json_delta", "partial_json": p}}))  # fmt: skip
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 1}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use",
                   "stop_sequence": None}, "usage": {"output_tokens": 9}}))  # fmt: skip
    events.append(("message_stop", {"type": "message_stop"}))
    return anthropic_frames(events)


def _through(unmasker: StreamUnmasker, data: bytes, writes: list[int]) -> bytes:
    out = b""
    for piece in _pieces(data.decode("latin-1"), writes):
        out += unmasker.feed(piece.encode("latin-1"))
    return out + unmasker.finish()


cuts = st.lists(st.integers(0, 10_000), max_size=12)


@settings(max_examples=200)
@given(cuts, cuts, cuts)
def test_openai_stream_restored_for_every_split(
    text: list[int], args: list[int], writes: list[int]
) -> None:
    stream = _openai_stream(_pieces(MASKED, text), _pieces(ARGS, args))
    restorer = Restorer(VALUES)
    body = collect(_through(StreamUnmasker(restorer, anthropic=False), stream, writes), "openai")
    assert body is not None
    message = body["choices"][0]["message"]
    assert message["content"] == restorer.restore_text(MASKED)
    assert "[X_9]" in message["content"]  # bracketed text of the answer's own stays
    arguments = message["tool_calls"][0]["function"]["arguments"]
    assert arguments == restorer.restore_text(ARGS, json_escaped=True)
    assert json.loads(arguments)["note"] == VALUES["[PHONE_1]"]


@settings(max_examples=200)
@given(cuts, cuts, cuts)
def test_anthropic_stream_restored_for_every_split(
    text: list[int], args: list[int], writes: list[int]
) -> None:
    stream = _anthropic_stream(_pieces(MASKED, text), _pieces(ARGS, args))
    restorer = Restorer(VALUES)
    body = collect(_through(StreamUnmasker(restorer, anthropic=True), stream, writes), "anthropic")
    assert body is not None
    assert body["content"][0]["text"] == restorer.restore_text(MASKED)
    assert body["content"][1]["input"] == {"to": VALUES["[EMAIL_1]"], "note": VALUES["[PHONE_1]"]}


def test_a_placeholder_prefix_at_the_end_is_released() -> None:
    restorer = Restorer(VALUES)
    stream = _openai_stream(["see [EMA"], [])
    body = collect(StreamUnmasker(restorer, anthropic=False).feed(stream), "openai")
    assert body is not None and body["choices"][0]["message"]["content"] == "see [EMA"
