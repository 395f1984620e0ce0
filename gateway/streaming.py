"""Streaming: upstream SSE events decoded per protocol, re-encoded for the client, relayed
chunk by chunk. Nothing is buffered whole; the usage of the stream is read on the way through.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import UpstreamError
from gateway.usage import Usage, usage_from_anthropic, usage_from_gemini, usage_from_openai

DONE = object()
# An event passed through without parsing (framing checked only).
RAW = object()
OPENAI_DONE = b"data: [DONE]\n\n"
ANTHROPIC_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def _garbage(provider: str) -> UpstreamError:
    return UpstreamError(
        f"provider {provider!r} sent a stream event that is not valid JSON",
        code="upstream_bad_response",
    )


def _has_any(data: bytes, needles: tuple[bytes, ...]) -> bool:
    """Whether any needle occurs in data.

    `bytes.find`, not `in`: CPython's bytes `__contains__` first tries the needle as an int and
    raises and clears a TypeError for every bytes needle, which costs more than the search.
    """
    for needle in needles:  # noqa: SIM110 (a generator expression costs more here)
        if data.find(needle) >= 0:
            return True
    return False


def sse_fields(raw: bytes) -> tuple[bytes, bytes]:
    """(event name, data) of one SSE event; multi-line data joined with newlines."""
    if raw.startswith(b"data: ") and raw.find(b"\n") < 0:
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
    """Parses one upstream protocol's events and keeps the usage they report.

    When translating (`parse_all`), every event is parsed. When passing a stream through in its
    own protocol, only the events that carry usage, errors or the end are parsed; the others
    are checked for framing (a JSON object per data line) and kept unparsed. Events are kept
    (references only) so that the generated text can be counted at the end, should the
    upstream report no usage; nothing walks the text per event.
    """

    def __init__(self, provider: str, parse_all: bool = True) -> None:
        self.provider = provider
        self.parse_all = parse_all
        self.usage = Usage()
        self.seen: list[Any] = []
        self.unparsed: list[bytes] = []  # raw events, or several joined by a blank line
        self.finished = False  # the protocol's end marker arrived
        self.ended = False  # a finish / stop reason arrived (some servers send no end marker)

    def complete(self) -> bool:
        """Whether the stream reached its end."""
        return self.finished or self.ended

    # Markers of the events a pass-through must look at, which come first (_HEAD) or last
    # (_TAIL) in a stream, and the framing every event starts with.
    _HEAD: tuple[bytes, ...] = ()
    _TAIL: tuple[bytes, ...] = ()
    _FIRST = b"data: {"

    def split(self, region: bytes) -> tuple[list[bytes], bytes, list[bytes]]:
        """Split a read's complete events into (events to look at one by one, a blob of
        ordinary events to forward unchanged, more events to look at).

        When passing through, only the first and last events of a read can be special (usage,
        the end, the start); the ordinary middle is checked for framing with two byte counts
        over the whole of it, so its cost is per read, not per event. When translating, or if
        anything looks odd, every event goes the per-event way.
        """
        if self.parse_all:
            return region.split(b"\n\n"), b"", []
        start, end = 0, len(region)
        head: list[bytes] = []
        tail: list[bytes] = []
        while start < end:  # peel special events off the tail
            i = region.rfind(b"\n\n", start, end)
            last = region[i + 2 if i >= 0 else start : end]
            if not _has_any(last, self._TAIL):
                break
            tail.append(last)
            end = i if i >= 0 else start
        while self._HEAD and start < end:  # and off the head
            i = region.find(b"\n\n", start, end)
            first = region[start : i if i >= 0 else end]
            if not _has_any(first, self._HEAD):
                break
            head.append(first)
            start = i + 2 if i >= 0 else end
        tail.reverse()
        if start >= end:
            return head, b"", tail
        blob = region[start:end] if start or end < len(region) else region
        events = blob.count(b"\n\n") + 1
        framed = (
            blob.startswith(self._FIRST)
            and blob[-1:] == b"}"
            and blob.count(b"}\n\n" + self._FIRST) == events - 1
        )
        if not framed:
            return region.split(b"\n\n"), b"", []  # the per-event path names the broken one
        self.unparsed.append(blob)
        return head, blob + b"\n\n", tail

    def output_text(self) -> str:
        """The text generated so far (for token estimates)."""
        items = list(self.seen)
        for blob in self.unparsed:
            for raw in blob.split(b"\n\n"):
                data = sse_fields(raw)[1]
                if data:
                    items.append(self._json(data))
        return "".join(t for item in items for t in self._texts(item) if isinstance(t, str))

    def _pass(self, raw: bytes, data: bytes) -> Any:
        """Keep an event unparsed, after checking that it is framed as a JSON object."""
        if data[:1] != b"{" or data.rstrip()[-1:] != b"}":
            raise _garbage(self.provider)
        self.unparsed.append(raw)
        return RAW

    def _texts(self, item: Any) -> list[Any]:
        raise NotImplementedError

    def decode(self, raw: bytes) -> Any:
        """The parsed event, None to skip it, or DONE."""
        raise NotImplementedError

    def _json(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise _garbage(self.provider) from None


_FINISH = (b'"finish_reason":"', b'"finish_reason": "')
_OPENAI_LOOK = (b'"usage":{', b'"usage": {', b'"error"', *_FINISH)


class OpenAIDecoder(Decoder):
    """`data: {chat.completion.chunk}` ... `data: [DONE]`."""

    # Usage and [DONE] end a stream. An error chunk in the middle is passed through as it is:
    # it is already in the client's format, and the stream then ends without [DONE].
    _TAIL: tuple[bytes, ...] = (b"[DONE]", *_OPENAI_LOOK)

    def decode(self, raw: bytes) -> Any:
        """A chunk dict."""
        _, data = sse_fields(raw)
        if not data:
            return None  # a comment or keep-alive
        if data == b"[DONE]":
            self.finished = True
            return DONE
        if not (self.parse_all or _has_any(data, _OPENAI_LOOK)):
            return self._pass(raw, data)
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
            if choice.get("finish_reason"):
                self.ended = True
        self.seen.append(chunk)
        return chunk

    def _texts(self, chunk: Any) -> list[Any]:
        out = []
        for choice in chunk.get("choices") or () if isinstance(chunk, dict) else ():
            delta = choice.get("delta") or choice  # legacy completions carry `text` on the choice
            out.append(delta.get("content") or delta.get("text"))
            for call in delta.get("tool_calls") or ():
                out.append((call.get("function") or {}).get("arguments"))
        return out


# Events a pass-through needs no parse of (names as sent, and as the client gets them).
_ANTHROPIC_BULK = {
    b"content_block_delta": "content_block_delta",
    b"content_block_start": "content_block_start",
    b"content_block_stop": "content_block_stop",
    b"ping": "ping",
}


class AnthropicDecoder(Decoder):
    """`event: NAME` / `data: {...}` pairs, ending with message_stop."""

    _HEAD: tuple[bytes, ...] = (b"event: message_start", b"event: error")
    _TAIL: tuple[bytes, ...] = (b"event: message_", b"event: error")
    _FIRST = b"event: "

    def __init__(self, provider: str, parse_all: bool = True) -> None:
        super().__init__(provider, parse_all)
        # Set here, not as class defaults: a compiled class cannot share a mutable default.
        self._final_usage = False
        self._raw_usage: dict[str, Any] = {}  # as reported so far (message_start, then deltas)

    def decode(self, raw: bytes) -> Any:
        """(event name, data dict), or (event name, RAW) for an event passed through."""
        if not self.parse_all and raw.startswith(b"event: "):
            nl = raw.find(b"\n")
            name = _ANTHROPIC_BULK.get(raw[7:nl].rstrip())
            if name is not None and raw.startswith(b"data: ", nl + 1):
                return name, self._pass(raw, raw[nl + 7 :])
        event, data = sse_fields(raw)
        if not data:
            return None
        obj = self._json(data)
        if not isinstance(obj, dict):
            raise _garbage(self.provider)
        name = event.decode() if event else str(obj.get("type", ""))
        if name == "message_start":
            usage = (obj.get("message") or {}).get("usage")
            self._raw_usage = usage if isinstance(usage, dict) else {}
            self.usage = usage_from_anthropic(usage)
        elif name == "content_block_delta":
            self.seen.append(obj)
        elif name == "message_delta":
            self._merge_delta_usage(obj.get("usage"))
            self.ended = bool((obj.get("delta") or {}).get("stop_reason"))
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

    def _texts(self, obj: Any) -> list[Any]:
        if not isinstance(obj, dict) or obj.get("type") != "content_block_delta":
            return []
        delta = obj.get("delta") or {}
        return [delta.get("text") or delta.get("partial_json")]

    def _merge_delta_usage(self, usage: Any) -> None:
        """message_delta carries cumulative counts that update message_start's."""
        if not isinstance(usage, dict):
            return
        self._final_usage = True
        self._raw_usage = {**self._raw_usage, **usage}
        self.usage = usage_from_anthropic(self._raw_usage)


class GeminiDecoder(Decoder):
    """`data: {GenerateContentResponse}` per event; the stream simply ends."""

    def decode(self, raw: bytes) -> Any:
        """A response dict."""
        _, data = sse_fields(raw)
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
        self.seen.append(obj)
        return obj

    def _texts(self, obj: Any) -> list[Any]:
        return [
            part.get("text")
            for cand in obj.get("candidates") or ()
            for part in (cand.get("content") or {}).get("parts") or ()
        ]


def openai_frames(chunks: list[dict[str, Any]]) -> bytes:
    """OpenAI SSE frames."""
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)


def anthropic_frames(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    """Anthropic SSE frames, each with its `event:` line (the SDK drops frames without one)."""
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for name, data in events
    )
