"""A cached answer sent again: as the JSON it was, or as the stream the client's API sends.

The answer is replayed verbatim: the same `id` and `created` as when it was generated, in the
body and in every stream chunk. A cached answer is the same answer, and `created` truthfully
says when it was made; the request's own identity travels in `x-request-id`, which is new per
request. This also makes a JSON hit one memory copy (`Entry.raw`), no serialization.

Streams are what the real APIs send, in the order they send it (see PROTOCOL-NOTES.md), with
the whole of each text or tool input in one delta: a hit has nothing to wait for, and one delta
per part keeps logprobs aligned with their text.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.cache.store import Entry
from gateway.streaming import OPENAI_DONE, anthropic_frames, openai_frames

Event = tuple[str, dict[str, Any]]


def replay_json(entry: Entry) -> bytes:
    """The body of a JSON hit: the cached response as it was sent."""
    return entry.raw


def replay(entry: Entry, stream: bool, include_usage: bool = False) -> bytes:
    """The whole body of a hit, JSON or SSE; `include_usage` is the OpenAI request's
    `stream_options.include_usage` (the usage chunk is sent only when asked for)."""
    if not stream:
        return entry.raw
    return replay_stream(entry.body, include_usage)


def replay_stream(body: dict[str, Any], include_usage: bool = False) -> bytes:
    """The SSE bytes of a complete response, in its own protocol, end marker included.

    Raises ValueError for a body that has no stream form (embeddings) or is unknown.
    """
    obj = body.get("object")
    if obj == "chat.completion":
        return openai_frames(chat_chunks(body, include_usage)) + OPENAI_DONE
    if obj == "text_completion":
        return openai_frames(completion_chunks(body, include_usage)) + OPENAI_DONE
    if body.get("type") == "message":
        return anthropic_frames(message_events(body))
    raise ValueError(f"a {obj or body.get('type')!r} response has no stream form")


# ---------------------------------------------------------------- OpenAI chat


class _Chunks:
    """Makes the chunks of one response: its id, created, model and fingerprint on each."""

    __slots__ = ("head", "include_usage", "usage")

    def __init__(self, body: dict[str, Any], obj: str, include_usage: bool) -> None:
        self.head: dict[str, Any] = {
            "id": body.get("id"),
            "object": obj,
            "created": body.get("created"),
            "model": body.get("model"),
        }
        for extra in ("service_tier", "system_fingerprint"):
            if body.get(extra) is not None:
                self.head[extra] = body[extra]
        self.include_usage = include_usage
        self.usage = body.get("usage")

    def __call__(self, choice: dict[str, Any]) -> dict[str, Any]:
        chunk = {**self.head, "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None  # as the API does: every chunk names usage, the last fills it
        return chunk

    def usage_chunk(self) -> dict[str, Any]:
        """The last chunk, sent only when the client asked: no choices, the usage."""
        return {**self.head, "choices": [], "usage": self.usage}


def _choice(index: int, delta: dict[str, Any], finish: Any = None, logprobs: Any = None) -> Any:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


def chat_chunks(body: dict[str, Any], include_usage: bool = False) -> list[dict[str, Any]]:
    """chat.completion → chat.completion.chunk dicts: per choice a role chunk, the content (or
    refusal) with its logprobs, each tool call (its id and name, then its arguments), the
    finish reason; then the usage chunk when the client asked for it."""
    make = _Chunks(body, "chat.completion.chunk", include_usage)
    chunks: list[dict[str, Any]] = []
    for pos, choice in enumerate(body.get("choices") or ()):
        index = choice.get("index", pos)
        message = choice.get("message") or {}
        content = message.get("content")
        # As the API does: content "" opens a text answer, null one made of tool calls only.
        opening = {"role": "assistant", "content": "" if content is not None else None}
        chunks.append(make(_choice(index, {**opening, "refusal": None})))
        logprobs = choice.get("logprobs")
        if content:
            chunks.append(make(_choice(index, {"content": content}, None, logprobs)))
            logprobs = None
        refusal = message.get("refusal")
        if refusal:
            chunks.append(make(_choice(index, {"refusal": refusal}, None, logprobs)))
        for n, call in enumerate(message.get("tool_calls") or ()):
            fn = call.get("function") or {}
            call_open = {
                "index": n,
                "id": call.get("id"),
                "type": call.get("type", "function"),
                "function": {"name": fn.get("name"), "arguments": ""},
            }
            chunks.append(make(_choice(index, {"tool_calls": [call_open]})))
            if fn.get("arguments"):
                more = {"index": n, "function": {"arguments": fn["arguments"]}}
                chunks.append(make(_choice(index, {"tool_calls": [more]})))
        chunks.append(make(_choice(index, {}, choice.get("finish_reason"))))
    if include_usage:
        chunks.append(make.usage_chunk())
    return chunks


# ---------------------------------------------------------------- OpenAI legacy completions


def completion_chunks(body: dict[str, Any], include_usage: bool = False) -> list[dict[str, Any]]:
    """text_completion → its stream form: per choice the text (with its logprobs) and then an
    empty text with the finish reason; then the usage chunk when asked for."""
    make = _Chunks(body, "text_completion", False)
    chunks: list[dict[str, Any]] = []
    for pos, choice in enumerate(body.get("choices") or ()):
        index = choice.get("index", pos)
        text = choice.get("text") or ""
        piece = {"text": text, "index": index, "logprobs": choice.get("logprobs")}
        chunks.append(make({**piece, "finish_reason": None}))
        end = {"text": "", "index": index, "logprobs": None}
        chunks.append(make({**end, "finish_reason": choice.get("finish_reason")}))
    if include_usage:
        chunks.append(make.usage_chunk())
    return chunks


# ---------------------------------------------------------------- Anthropic messages


def _block_events(index: int, block: dict[str, Any]) -> list[Event]:
    """content_block_start, its deltas and content_block_stop for one content block."""
    btype = block.get("type")
    deltas: list[dict[str, Any]] = []
    if btype == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        if block.get("citations"):
            start["citations"] = []
        if block.get("text"):
            deltas.append({"type": "text_delta", "text": block["text"]})
        for citation in block.get("citations") or ():
            deltas.append({"type": "citations_delta", "citation": citation})
    elif btype in ("tool_use", "server_tool_use"):
        start = {**block, "input": {}}
        if block.get("input"):
            arguments = orjson.dumps(block["input"]).decode()
            deltas.append({"type": "input_json_delta", "partial_json": arguments})
    elif btype == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        if block.get("thinking"):
            deltas.append({"type": "thinking_delta", "thinking": block["thinking"]})
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    else:
        start = block  # redacted thinking, tool results: the API sends them whole, no delta
    events: list[Event] = [
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        )
    ]
    events.extend(
        ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
        for d in deltas
    )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def message_events(body: dict[str, Any]) -> list[Event]:
    """An Anthropic message → message_start, each block's events, message_delta (stop reason
    and the final, cumulative usage), message_stop."""
    usage = dict(body.get("usage") or {})
    start_usage = {**usage, "output_tokens": 0}
    message = {
        **body,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    events: list[Event] = [("message_start", {"type": "message_start", "message": message})]
    for index, block in enumerate(body.get("content") or ()):
        events.extend(_block_events(index, block))
    delta = {"stop_reason": body.get("stop_reason"), "stop_sequence": body.get("stop_sequence")}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events
