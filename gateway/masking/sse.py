"""Restoring masked values in a stream the client is about to receive, event by event.

The gateway masks a prompt before it leaves the box; the model answers with placeholders such
as `[EMAIL_1]`, and the client must see the original values. In a stream a placeholder may be
split across events ("[EMA" in one delta, "IL_1]" in the next), so the bytes cannot be
restored one event at a time: each text channel (an OpenAI choice's content or one tool
call's arguments, an Anthropic content block's text or partial JSON; never thinking, whose
signature covers the text as the model wrote it) has its own
`StreamRestorer`, which holds back only what could still become a placeholder. What is held
when the channel ends (a choice's `finish_reason`, a block's `content_block_stop`) is sent in
one extra delta just before that event.

`StreamUnmasker.feed` takes the exact SSE bytes of the client's protocol (complete events or
not) and returns the bytes to send instead. Events it does not understand pass unchanged.
Only requests in which something was masked pay for this.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.masking.restore import Restorer, StreamRestorer
from gateway.streaming import sse_fields

_Channel = tuple[Any, ...]


class StreamUnmasker:
    """Per-stream state: the channel restorers of an OpenAI or an Anthropic stream."""

    __slots__ = ("_anthropic", "_buf", "_channels", "_restorer")

    def __init__(self, restorer: Restorer, anthropic: bool) -> None:
        self._restorer = restorer
        self._anthropic = anthropic
        self._channels: dict[_Channel, StreamRestorer] = {}
        self._buf = b""

    def feed(self, data: bytes) -> bytes:
        """The bytes to send for `data`; a trailing partial event waits for the next call."""
        if self._buf:
            data = self._buf + data
        if data.find(b"\r") >= 0:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self._buf = data
            return b""
        self._buf = data[end + 2 :]
        out: list[bytes] = []
        for raw in data[:end].split(b"\n\n"):
            if raw:
                out.append(self._event(raw))
        return b"".join(out)

    def finish(self) -> bytes:
        """Whatever partial event is left (a stream that ended without its blank line)."""
        rest, self._buf = self._buf, b""
        return rest

    # ---------------------------------------------------------------- one event

    def _event(self, raw: bytes) -> bytes:
        event, payload = sse_fields(raw)
        if not payload.startswith(b"{"):
            return raw + b"\n\n"  # [DONE], comments, pings without data
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return raw + b"\n\n"
        if not isinstance(obj, dict):
            return raw + b"\n\n"
        if self._anthropic:
            return self._anthropic_event(event.decode(errors="replace"), obj)
        return self._openai_chunk(obj)

    def _channel(self, key: _Channel, json_escaped: bool) -> StreamRestorer:
        ch = self._channels.get(key)
        if ch is None:
            ch = self._channels[key] = self._restorer.stream(json_escaped=json_escaped)
        return ch

    def _release(self, key: _Channel, json_escaped: bool, text: Any) -> Any:
        if not isinstance(text, str) or not text:
            return text
        return self._channel(key, json_escaped).feed(text)

    def _held(self, key: _Channel) -> str:
        ch = self._channels.pop(key, None)
        return ch.flush() if ch is not None else ""

    # ---------------------------------------------------------------- OpenAI

    def _openai_chunk(self, chunk: dict[str, Any]) -> bytes:
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return _openai_frame(chunk)  # an error object
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            i = choice.get("index", 0)
            ends = choice.get("finish_reason") is not None
            if "text" in choice:  # legacy completions
                choice["text"] = self._release(("text", i), False, choice["text"])
                if ends:
                    choice["text"] = (choice["text"] or "") + self._held(("text", i))
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                if not ends:
                    continue
                delta = choice["delta"] = {}
            self._openai_delta(i, delta)
            if ends:
                self._openai_flush(i, delta)
        return _openai_frame(chunk)

    def _openai_delta(self, i: Any, delta: dict[str, Any]) -> None:
        for field in _OPENAI_TEXTS:
            if field in delta:
                delta[field] = self._release((field, i), False, delta[field])
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and "arguments" in fn:
                    key = ("args", i, call.get("index", 0))
                    fn["arguments"] = self._release(key, True, fn["arguments"])

    def _openai_flush(self, i: Any, delta: dict[str, Any]) -> None:
        """A choice ends: what its channels still hold goes out in its last delta."""
        for field in _OPENAI_TEXTS:
            text = self._held((field, i))
            if text:
                delta[field] = (delta.get(field) or "") + text
        for key in [k for k in self._channels if k[0] == "args" and k[1] == i]:
            text = self._held(key)
            if not text:
                continue
            calls = delta.setdefault("tool_calls", [])
            same = [c for c in calls if isinstance(c, dict) and c.get("index", 0) == key[2]]
            if same and isinstance(same[0].get("function"), dict):
                fn = same[0]["function"]
                fn["arguments"] = (fn.get("arguments") or "") + text
            else:
                calls.append({"index": key[2], "function": {"arguments": text}})

    # ---------------------------------------------------------------- Anthropic

    def _anthropic_event(self, name: str, data: dict[str, Any]) -> bytes:
        kind = data.get("type", name)
        if kind == "content_block_delta":
            i = data.get("index", 0)
            delta = data.get("delta")
            if isinstance(delta, dict):
                # Thinking is left as the model wrote it: its signature covers that text.
                for field, escaped in (("text", False), ("partial_json", True)):
                    if field in delta:
                        delta[field] = self._release((field, i), escaped, delta[field])
        elif kind == "content_block_stop":
            i = data.get("index", 0)
            out = b""
            for field in ("text", "partial_json"):
                text = self._held((field, i))
                if text:
                    delta = {"type": _DELTA_TYPES[field], field: text}
                    out += _anthropic_frame(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": i, "delta": delta},
                    )
            return out + _anthropic_frame(name or kind, data)
        elif kind == "content_block_start":
            block = data.get("content_block")
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                block["text"] = self._restorer.restore_text(block["text"])
        return _anthropic_frame(name or kind, data)


_OPENAI_TEXTS = ("content", "reasoning_content", "refusal")
_DELTA_TYPES = {"text": "text_delta", "partial_json": "input_json_delta"}


def _openai_frame(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _anthropic_frame(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
