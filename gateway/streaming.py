"""Streaming: upstream SSE events decoded per protocol, re-encoded for the client, relayed
chunk by chunk. Nothing is buffered whole; the usage of the stream is read on the way through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.errors import UpstreamError
from gateway.usage import Usage, usage_from_anthropic, usage_from_gemini, usage_from_openai

DONE = object()
OPENAI_DONE = b"data: [DONE]\n\n"
ANTHROPIC_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def _garbage(provider: str) -> UpstreamError:
    return UpstreamError(
        f"provider {provider!r} sent a stream event that is not valid JSON",
        code="upstream_bad_response",
    )


def _sse_fields(raw: bytes) -> tuple[bytes, bytes]:
    """(event name, data) of one SSE event; multi-line data joined with newlines."""
    if raw.startswith(b"data: ") and b"\n" not in raw:
        return b"", raw[6:]
    event = b""
    data: list[bytes] = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            event = line[6:].strip()
    return event, b"\n".join(data)


class Decoder:
    """Parses one upstream protocol's events; keeps the usage and the text for estimates."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.usage = Usage()
        self.text: list[str] = []
        self.finished = False

    def decode(self, raw: bytes) -> Any:
        """The parsed event, None to skip it, or DONE."""
        raise NotImplementedError

    def _json(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise _garbage(self.provider) from None


class OpenAIDecoder(Decoder):
    """`data: {chat.completion.chunk}` ... `data: [DONE]`."""

    def decode(self, raw: bytes) -> Any:
        """A chunk dict."""
        _, data = _sse_fields(raw)
        if not data:
            return None  # a comment or keep-alive
        if data == b"[DONE]":
            self.finished = True
            return DONE
        chunk = self._json(data)
        if not isinstance(chunk, dict):
            raise _garbage(self.provider)
        if "error" in chunk:
            err = chunk["error"]
            msg = err.get("message") if isinstance(err, dict) else None
            raise UpstreamError(f"provider {self.provider!r} failed mid-stream: {msg or err}")
        usage = chunk.get("usage")
        if usage:
            self.usage = usage_from_openai(usage)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or choice  # legacy completions carry `text` on the choice
            text = delta.get("content") or delta.get("text")
            if text:
                self.text.append(text)
            for call in delta.get("tool_calls") or ():
                args = (call.get("function") or {}).get("arguments")
                if args:
                    self.text.append(args)
        return chunk


class AnthropicDecoder(Decoder):
    """`event: NAME` / `data: {...}` pairs, ending with message_stop."""

    _final_usage = False

    def decode(self, raw: bytes) -> Any:
        """(event name, data dict)."""
        event, data = _sse_fields(raw)
        if not data:
            return None
        obj = self._json(data)
        if not isinstance(obj, dict):
            raise _garbage(self.provider)
        name = event.decode() if event else str(obj.get("type", ""))
        if name == "message_start":
            self.usage = usage_from_anthropic((obj.get("message") or {}).get("usage"))
        elif name == "content_block_delta":
            delta = obj.get("delta") or {}
            text = delta.get("text") or delta.get("partial_json")
            if text:
                self.text.append(text)
        elif name == "message_delta":
            self._merge_delta_usage(obj.get("usage"))
        elif name == "message_stop":
            self.finished = True
            if not self._final_usage:  # no final output count: the gateway must estimate
                self.usage.reported = False
        elif name == "error":
            err = obj.get("error") or {}
            raise UpstreamError(
                f"provider {self.provider!r} failed mid-stream: {err.get('message', err)}",
                code="upstream_stream_error",
            )
        return name, obj

    def _merge_delta_usage(self, usage: Any) -> None:
        """message_delta carries cumulative output (and sometimes input) counts."""
        if not isinstance(usage, dict):
            return
        self._final_usage = True
        merged = usage_from_anthropic({**_anthropic_usage_dict(self.usage), **usage})
        self.usage = merged


def _anthropic_usage_dict(u: Usage) -> dict[str, int]:
    return {
        "input_tokens": u.input_tokens - u.cached_tokens,
        "output_tokens": u.output_tokens,
        "cache_read_input_tokens": u.cached_tokens,
    }


class GeminiDecoder(Decoder):
    """`data: {GenerateContentResponse}` per event; the stream simply ends."""

    def decode(self, raw: bytes) -> Any:
        """A response dict."""
        _, data = _sse_fields(raw)
        if not data:
            return None
        obj = self._json(data)
        if not isinstance(obj, dict):
            raise _garbage(self.provider)
        if "error" in obj:
            err = obj["error"]
            msg = err.get("message") if isinstance(err, dict) else err
            raise UpstreamError(f"provider {self.provider!r} failed mid-stream: {msg}")
        meta = obj.get("usageMetadata")
        if meta:
            self.usage = usage_from_gemini(meta)
        for cand in obj.get("candidates") or ():
            if cand.get("finishReason"):
                self.finished = True
            for part in (cand.get("content") or {}).get("parts") or ():
                text = part.get("text")
                if text:
                    self.text.append(text)
        return obj


# An encoder turns (raw upstream event, decoded event) into the bytes the client gets.
Encode = Callable[[bytes, Any], bytes]


def openai_frames(chunks: list[dict[str, Any]]) -> bytes:
    """OpenAI SSE frames."""
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)


def anthropic_frames(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    """Anthropic SSE frames, each with its `event:` line (the SDK drops frames without one)."""
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for name, data in events
    )
