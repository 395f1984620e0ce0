"""A stream read back into the whole answer it stands for: the inverse of `replay_stream`.

A client that always streams would otherwise never fill the cache. The dispatcher feeds a
collector the exact bytes the client is sent (so the cached answer is what the client saw,
whatever translation made them); at the end the collector gives the complete response body in
the client's protocol, the shape a non-streamed call returns, or None.

None is the answer to anything short of a whole, understood stream: no end marker, an error
event, JSON that does not parse, an event or delta kind it does not know. A miss costs one
upstream call; a wrong entry would be served to everyone in the scope, so the collector fails
safe and never raises.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.envelopes import ANTHROPIC
from gateway.streaming import sse_fields
from gateway.usage import Usage


class _Unreadable(Exception):
    """A stream the collector cannot turn into an answer."""


def _need(ok: bool) -> None:
    if not ok:
        raise _Unreadable


def _text(value: Any) -> str:
    """A text fragment; None counts as no text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Unreadable
    return value


def _merge_logprobs(acc: dict[str, Any] | None, new: Any) -> dict[str, Any] | None:
    """Logprobs of one more piece: the lists (`content`, `refusal`, the legacy `tokens`,
    `token_logprobs`, ...) continue one another; the first value of anything else stays."""
    if new is None:
        return acc
    _need(isinstance(new, dict))
    if acc is None:
        return {k: list(v) if isinstance(v, list) else v for k, v in new.items()}
    for name, value in new.items():
        old = acc.get(name)
        if isinstance(value, list):
            if isinstance(old, list):
                old.extend(value)  # ours: copied when first seen
            else:
                acc[name] = list(value)
        elif old is None:
            acc[name] = value
    return acc


class StreamCollector:
    """SSE framing shared by the protocols: whole events out of reads cut anywhere.

    `feed` takes the bytes as written to the client, any number of events per call and an
    event possibly split across calls (the partial one waits in a small buffer), LF or CRLF.
    `result` is the complete body, or None. Neither raises.
    """

    __slots__ = ("_buf", "_done", "_failed")

    def __init__(self) -> None:
        self._buf = b""
        self._done = False  # the protocol's end marker arrived
        self._failed = False  # something not understood: no answer, whatever follows

    def feed(self, data: bytes) -> None:
        """Read more of the stream."""
        if self._failed:
            return
        try:
            buf = self._buf + data if self._buf else data
            if buf.find(b"\r") >= 0:  # CRLF framing; a CR at the very end waits for its LF
                buf = buf.replace(b"\r\n", b"\n")
            end = buf.rfind(b"\n\n")
            if end < 0:
                self._buf = buf
                return
            self._buf = buf[end + 2 :]
            for raw in buf[:end].split(b"\n\n"):
                event, payload = sse_fields(raw.strip(b"\n"))
                if not payload:
                    continue  # a blank line too many, a comment, a keep-alive
                _need(not self._done)  # nothing follows the end
                self._event(event.decode(), payload)
        except Exception:  # odd input of any kind: no answer, never an error for the client
            self._failed = True

    def result(self, usage: Usage | None = None) -> dict[str, Any] | None:
        """The whole answer, or None when the stream was not complete and understood.

        `usage` is what the request used by the gateway's count: it fills the body's usage
        when the stream carried none (an OpenAI client that did not ask for the usage chunk,
        an Anthropic upstream that sent no final count), as a non-streamed answer has one.
        """
        if self._failed or not self._done:
            return None
        try:
            return self._body(usage)
        except Exception:
            return None

    def _event(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def _body(self, usage: Usage | None) -> dict[str, Any] | None:
        raise NotImplementedError


# ---------------------------------------------------------------- OpenAI


def _openai_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


class _OpenAIStream(StreamCollector):
    """`data: {chunk}` ... `data: [DONE]`: the head (id, created, model) of the first chunk,
    the fingerprint and tier when any chunk names them, the usage of the usage chunk."""

    __slots__ = ("_choices", "_head", "_usage")
    _OBJECT = ""

    def __init__(self) -> None:
        super().__init__()
        self._head: dict[str, Any] = {}
        self._usage: dict[str, Any] | None = None
        self._choices: dict[int, Any] = {}

    def _event(self, name: str, data: bytes) -> None:
        if data == b"[DONE]":
            self._done = True
            return
        chunk = orjson.loads(data)
        _need(isinstance(chunk, dict) and "error" not in chunk and not name)
        head = self._head
        if not head:
            # The first chunk names the answer; a later one may differ (the gateway's own
            # usage chunk for an estimated count is `chatcmpl-usage`, created 0).
            head.update(id=chunk.get("id"), created=chunk.get("created"), model=chunk.get("model"))
        for extra in ("system_fingerprint", "service_tier"):
            if extra not in head and chunk.get(extra) is not None:
                head[extra] = chunk[extra]
        usage = chunk.get("usage")
        if usage is not None:
            _need(isinstance(usage, dict))
            self._usage = usage
        choices = chunk.get("choices")
        if choices is None:
            return
        _need(isinstance(choices, list))
        for pos, choice in enumerate(choices):
            _need(isinstance(choice, dict))
            index = choice.get("index", pos)
            _need(type(index) is int)
            self._choice(index, choice)

    def _choice(self, index: int, choice: dict[str, Any]) -> None:
        raise NotImplementedError

    def _made(self, choices: list[dict[str, Any]], usage: Usage | None) -> dict[str, Any] | None:
        if not self._head or not choices:
            return None
        body: dict[str, Any] = {"object": self._OBJECT, **self._head, "choices": choices}
        if self._usage is not None:
            body["usage"] = self._usage
        elif usage is not None:
            body["usage"] = _openai_usage(usage)
        return body


# Text fields of a chat delta: each delta carries the next piece.
_CHAT_TEXTS = ("content", "refusal", "reasoning_content", "reasoning")


class _ChatChoice:
    """One choice being read: its role, the pieces of each text field, its tool calls."""

    __slots__ = ("annotations", "finish_reason", "logprobs", "role", "texts", "tools")

    def __init__(self) -> None:
        self.role: Any = None
        self.texts: dict[str, list[str]] = {}  # field → pieces, from the field's first delta
        self.tools: dict[Any, dict[str, Any]] = {}  # tool call index → the call so far
        self.annotations: list[Any] | None = None
        self.logprobs: dict[str, Any] | None = None
        self.finish_reason: Any = None

    def feed(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta")
        if delta is not None:
            _need(isinstance(delta, dict))
            for name, value in delta.items():
                if value is None:
                    continue
                if name in _CHAT_TEXTS:
                    self.texts.setdefault(name, []).append(_text(value))
                elif name == "role":
                    self.role = self.role or value
                elif name == "tool_calls":
                    _need(isinstance(value, list))
                    for call in value:
                        self._tool(call)
                elif name == "annotations":
                    _need(isinstance(value, list))
                    self.annotations = [*(self.annotations or ()), *value]
                else:
                    raise _Unreadable  # audio, function_call, a field of tomorrow
            for name in _CHAT_TEXTS:  # `content: null` opens an answer of tool calls only
                if name in delta and delta[name] is None:
                    self.texts.setdefault(name, [])
        self.logprobs = _merge_logprobs(self.logprobs, choice.get("logprobs"))
        if choice.get("finish_reason") is not None:
            self.finish_reason = choice["finish_reason"]

    def _tool(self, call: Any) -> None:
        """A tool call opens with its index, id, type and name; its arguments come in pieces.
        An id, type or name said again (some servers repeat them) is not a new piece."""
        _need(isinstance(call, dict))
        index = call.get("index")
        if index is None:  # servers that leave out the index name the call by its id
            index = call.get("id") or (next(reversed(self.tools)) if self.tools else 0)
        fn = call.get("function") or {}
        _need(isinstance(fn, dict))
        acc = self.tools.get(index)
        if acc is None:
            acc = self.tools[index] = {"id": None, "type": None, "name": None, "arguments": []}
        for name, value in (("id", call.get("id")), ("type", call.get("type"))):
            if value and not acc[name]:
                acc[name] = value
        if fn.get("name") and not acc["name"]:
            acc["name"] = fn["name"]
        acc["arguments"].append(_text(fn.get("arguments")))

    def message(self) -> dict[str, Any]:
        texts = self.texts
        content = texts.get("content")
        out: dict[str, Any] = {
            "role": self.role or "assistant",
            # Opened with `content: ""`: text, "" if nothing followed; opened null (tool
            # calls only) and never continued: null.
            "content": "".join(content) if content else None,
        }
        for name in _CHAT_TEXTS[1:]:
            pieces = texts.get(name)
            if pieces is not None:
                out[name] = "".join(pieces) or None
        if self.tools:
            calls = []
            for acc in self.tools.values():
                _need(isinstance(acc["name"], str))
                fn = {"name": acc["name"], "arguments": "".join(acc["arguments"])}
                calls.append({"id": acc["id"], "type": acc["type"] or "function", "function": fn})
            out["tool_calls"] = calls
        if self.annotations is not None:
            out["annotations"] = self.annotations
        return out


class ChatCollector(_OpenAIStream):
    """chat.completion.chunk events → a chat.completion."""

    __slots__ = ()
    _OBJECT = "chat.completion"

    def _choice(self, index: int, choice: dict[str, Any]) -> None:
        acc = self._choices.get(index)
        if acc is None:
            acc = self._choices[index] = _ChatChoice()
        acc.feed(choice)

    def _body(self, usage: Usage | None) -> dict[str, Any] | None:
        choices = [
            {
                "index": index,
                "message": acc.message(),
                "logprobs": acc.logprobs,
                "finish_reason": acc.finish_reason,
            }
            for index, acc in sorted(self._choices.items())
        ]
        return self._made(choices, usage)


class CompletionCollector(_OpenAIStream):
    """Legacy text_completion chunks → a text_completion."""

    __slots__ = ()
    _OBJECT = "text_completion"

    def _choice(self, index: int, choice: dict[str, Any]) -> None:
        acc = self._choices.get(index)
        if acc is None:
            acc = self._choices[index] = {"text": [], "logprobs": None, "finish_reason": None}
        acc["text"].append(_text(choice.get("text")))
        acc["logprobs"] = _merge_logprobs(acc["logprobs"], choice.get("logprobs"))
        if choice.get("finish_reason") is not None:
            acc["finish_reason"] = choice["finish_reason"]

    def _body(self, usage: Usage | None) -> dict[str, Any] | None:
        choices = [
            {
                "text": "".join(acc["text"]),
                "index": index,
                "logprobs": acc["logprobs"],
                "finish_reason": acc["finish_reason"],
            }
            for index, acc in sorted(self._choices.items())
        ]
        return self._made(choices, usage)


# ---------------------------------------------------------------- Anthropic

# Delta kind → the block field its pieces continue.
_DELTA_FIELDS = {
    "text_delta": ("text", "text"),
    "thinking_delta": ("thinking", "thinking"),
    "signature_delta": ("signature", "signature"),
    "input_json_delta": ("partial_json", "input"),
}


class MessageCollector(StreamCollector):
    """Anthropic Messages events → a message: message_start's message, each block made whole
    from its start and deltas (a tool's input parsed from its JSON pieces), message_delta's
    stop reason and usage, which count from message_start's."""

    __slots__ = ("_blocks", "_final_usage", "_message", "_usage")

    def __init__(self) -> None:
        super().__init__()
        self._message: dict[str, Any] | None = None
        self._usage: dict[str, Any] = {}
        self._final_usage = False  # message_delta reported the final counts
        self._blocks: dict[int, tuple[dict[str, Any], dict[str, list[str]], list[Any]]] = {}

    def _event(self, name: str, data: bytes) -> None:
        obj = orjson.loads(data)
        _need(isinstance(obj, dict))
        kind = name or obj.get("type")
        if kind == "content_block_delta":
            self._delta(obj)
        elif kind == "ping" or kind == "content_block_stop":
            pass
        elif kind == "content_block_start":
            index, block = obj.get("index"), obj.get("content_block")
            _need(type(index) is int and index not in self._blocks and isinstance(block, dict))
            citations = block.get("citations")
            self._blocks[index] = (dict(block), {}, list(citations or ()))
        elif kind == "message_start":
            message = obj.get("message")
            _need(self._message is None and isinstance(message, dict))
            self._message = dict(message)
            self._count(message.get("usage"))
        elif kind == "message_delta":
            delta = obj.get("delta") or {}
            if self._message is None or not isinstance(delta, dict):
                raise _Unreadable
            self._message.update(delta)  # the stop reason and sequence, and what comes next
            if obj.get("usage") is not None:
                self._count(obj["usage"])
                self._final_usage = True
        elif kind == "message_stop":
            self._done = True
        else:
            raise _Unreadable  # error, or an event of tomorrow

    def _count(self, usage: Any) -> None:
        """message_delta's counts are cumulative: they replace message_start's."""
        if usage is None:
            return
        _need(isinstance(usage, dict))
        self._usage.update((k, v) for k, v in usage.items() if v is not None)

    def _delta(self, obj: dict[str, Any]) -> None:
        index, delta = obj.get("index"), obj.get("delta")
        entry = self._blocks.get(index) if type(index) is int else None
        if entry is None or not isinstance(delta, dict):
            raise _Unreadable
        _, pieces, citations = entry
        kind = delta.get("type")
        if kind == "citations_delta":
            citations.append(delta.get("citation"))
            return
        field = _DELTA_FIELDS.get(kind) if isinstance(kind, str) else None
        if field is None:
            raise _Unreadable
        source, target = field
        pieces.setdefault(target, []).append(_text(delta.get(source)))

    def _body(self, usage: Usage | None) -> dict[str, Any] | None:
        if self._message is None:
            return None
        content = []
        for _, (start, pieces, citations) in sorted(self._blocks.items()):
            block = dict(start)
            for name, parts in pieces.items():
                if name == "input":
                    text = "".join(parts)
                    if text:
                        block["input"] = orjson.loads(text)
                        _need(isinstance(block["input"], dict))
                else:
                    block[name] = _text(block.get(name)) + "".join(parts)
            if citations:
                block["citations"] = citations
            content.append(block)
        counts = dict(self._usage)
        if not self._final_usage and usage is not None:
            # message_start's output count is a placeholder; the gateway counted the rest.
            if "input_tokens" not in counts:
                counts["input_tokens"] = usage.input_tokens - usage.cached_tokens
            counts["output_tokens"] = usage.output_tokens
        return {**self._message, "content": content, "usage": counts}


def collector(api: str, endpoint: str = "chat") -> StreamCollector:
    """A collector for what a client of `api` ('openai' or 'anthropic') is streamed from
    `endpoint` ('chat' or 'completions', OpenAI's)."""
    if api == ANTHROPIC:
        return MessageCollector()
    if endpoint == "completions":
        return CompletionCollector()
    return ChatCollector()


def collect(data: bytes, api: str, endpoint: str = "chat") -> dict[str, Any] | None:
    """The whole answer of a whole stream (for tests and tools): `collector` fed at once."""
    c = collector(api, endpoint)
    c.feed(data)
    return c.result()
