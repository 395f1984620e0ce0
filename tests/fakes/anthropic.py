"""Fake Anthropic Messages API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiohttp import web

from .base import BODY, FakeUpstream, Prompt, Reply, json_response, make_reply, rand_id, sse

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_STOP = {
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "tool_call": "tool_use",
}


def blocks_text(content: Any) -> str:
    """Text of a string or of a list of blocks (text blocks only, concatenated)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            b["text"]
            for b in content
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )
    return ""


def _tool_results(content: Any) -> list[str]:
    if not isinstance(content, list):
        return []
    return [
        blocks_text(b.get("content"))
        for b in content
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]


def messages_prompt(body: dict[str, Any]) -> Prompt:
    messages: list[dict[str, Any]] = body["messages"]
    texts = [blocks_text(body.get("system"))]
    last_user = ""
    for m in messages:
        text = blocks_text(m.get("content"))
        texts.append(text)
        texts.extend(_tool_results(m.get("content")))
        if m["role"] == "user":
            last_user = text
    last = messages[-1]
    results = _tool_results(last.get("content")) if last["role"] == "user" else []
    tools = [t["name"] for t in body.get("tools") or () if isinstance(t, dict) and "name" in t]
    choice = body.get("tool_choice")
    choice_type = choice.get("type") if isinstance(choice, dict) else None
    stops = body.get("stop_sequences")
    return Prompt(
        texts=texts,
        last_user_text=last_user,
        last_is_user=last["role"] == "user" and not results,
        tool_result=" ".join(results) if results else None,
        tools=tools,
        forced_tool=choice.get("name") if choice_type == "tool" else None,  # type: ignore[union-attr]
        tools_disabled=choice_type == "none",
        stop=[s for s in stops if isinstance(s, str)] if isinstance(stops, list) else (),
        max_tokens=body["max_tokens"],
    )


class FakeAnthropic(FakeUpstream):
    name = "fake-anthropic"
    default_key = "sk-ant-fake"
    request_id_header = "request-id"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self.messages)]

    def error(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, **_: Any
    ) -> web.Response:
        etype = _ERROR_TYPES.get(status, "api_error")
        body = {"type": "error", "error": {"type": etype, "message": message}}
        return json_response(body, status, headers)

    def not_found(self, request: web.Request) -> web.Response:
        return self.error(404, "Not Found")

    def bad_frame(self, payload: str, *, array_mode: bool = False) -> bytes:
        # The SDK drops frames without an `event:` line, so give the bad data a real event name.
        return f"event: content_block_delta\ndata: {payload}\n\n".encode()

    def check_request(self, request: web.Request) -> web.Response | None:
        # Current SDKs send the key as `Authorization: Bearer`; curl users send `x-api-key`.
        key = request.headers.get("x-api-key")
        auth = request.headers.get("Authorization")
        if key is None and auth is not None and auth.startswith("Bearer "):
            key = auth.removeprefix("Bearer ")
        if key is None:
            return self.error(401, "x-api-key header is required")
        if key != self.key:
            return self.error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self.error(400, "anthropic-version: header is required")
        return None

    def _validate(self, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            return self.error(400, "There was an error parsing the body of your request.")
        for name in ("model", "messages", "max_tokens"):
            if name not in body:
                return self.error(400, f"{name}: Field required")
        if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
            return self.error(400, "max_tokens: Input should be greater than or equal to 1")
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            return self.error(400, "messages: at least one message is required")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                return self.error(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
            if "content" not in m:
                return self.error(400, f"messages.{i}.content: Field required")
        return None

    def _usage(self, reply: Reply) -> dict[str, int]:
        # As the real API does, input_tokens excludes the tokens read from the prompt cache.
        return {
            "input_tokens": max(reply.input_tokens - self.cached_tokens, 0),
            "output_tokens": reply.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.cached_tokens,
        }

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = request[BODY]
        if (err := self._validate(body)) is not None:
            return err
        reply = make_reply(self.name, messages_prompt(body))
        msg_id = "msg_" + rand_id(24)
        tool_id = "toolu_" + rand_id(24) if reply.tool else None
        if self.is_stream(request, body):
            frames = self._events(body["model"], msg_id, tool_id, reply, self.no_usage(request))
            return await self.stream(request, frames)
        if tool_id is None:
            block: dict[str, Any] = {"type": "text", "text": reply.text}
        else:
            block = {"type": "tool_use", "id": tool_id, "name": reply.tool}
            block["input"] = reply.tool_args
        out: dict[str, Any] = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [block],
            "stop_reason": _STOP[reply.finish],
            "stop_sequence": reply.stop_sequence,
        }
        if not self.no_usage(request):
            out["usage"] = self._usage(reply)
        return json_response(out)

    def _events(
        self, model: str, msg_id: str, tool_id: str | None, reply: Reply, no_usage: bool
    ) -> Iterator[bytes]:
        start_usage = {**self._usage(reply), "output_tokens": 1}
        message: dict[str, Any] = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        yield sse({"type": "message_start", "message": message}, "message_start")
        if tool_id is None:
            block: dict[str, Any] = {"type": "text", "text": ""}
            delta_type, delta_key = "text_delta", "text"
        else:
            block = {"type": "tool_use", "id": tool_id, "name": reply.tool, "input": {}}
            delta_type, delta_key = "input_json_delta", "partial_json"
        start = {"type": "content_block_start", "index": 0, "content_block": block}
        yield sse(start, "content_block_start")
        yield sse({"type": "ping"}, "ping")
        for piece in reply.pieces:
            delta = {"type": delta_type, delta_key: piece}
            yield sse(
                {"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta"
            )
        yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        msg_delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP[reply.finish], "stop_sequence": reply.stop_sequence},
        }
        if not no_usage:
            msg_delta["usage"] = {"output_tokens": reply.output_tokens}
        yield sse(msg_delta, "message_delta")
        yield sse({"type": "message_stop"}, "message_stop")
