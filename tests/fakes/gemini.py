"""Fake Google Gemini API (generativelanguage.googleapis.com, v1beta)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from .base import (
    BODY,
    FakeUpstream,
    Prompt,
    Reply,
    embedding,
    json_response,
    make_reply,
    rand_id,
    sse,
)

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_FINISH = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS", "tool_call": "STOP"}
_KEY_INVALID_DETAILS = [
    {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
]


@functools.cache
def _snake(camel: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), camel)


def field(obj: Any, camel: str) -> Any:
    """A proto-JSON field: Google APIs accept both lowerCamelCase and snake_case names."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(camel)
    return obj.get(_snake(camel)) if value is None else value


def parts_of(content: Any) -> list[dict[str, Any]]:
    parts = field(content, "parts")
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def parts_text(parts: list[dict[str, Any]]) -> str:
    return "".join(p["text"] for p in parts if isinstance(p.get("text"), str))


def _results(parts: list[dict[str, Any]]) -> list[str]:
    return [
        orjson.dumps(field(fr, "response")).decode()
        for p in parts
        if (fr := field(p, "functionResponse")) is not None
    ]


def gemini_prompt(body: dict[str, Any]) -> Prompt:
    contents: list[dict[str, Any]] = body["contents"]
    texts = [parts_text(parts_of(field(body, "systemInstruction")))]
    last_user = ""
    for c in contents:
        parts = parts_of(c)
        texts.append(text := parts_text(parts))
        texts.extend(_results(parts))
        if c.get("role", "user") == "user":
            last_user = text
    last = contents[-1]
    results = _results(parts_of(last))
    tools = [
        fd["name"]
        for t in body.get("tools") or ()
        for fd in field(t, "functionDeclarations") or ()
        if isinstance(fd, dict) and "name" in fd
    ]
    calling = field(field(body, "toolConfig"), "functionCallingConfig")
    mode = field(calling, "mode")
    allowed = field(calling, "allowedFunctionNames")
    config = field(body, "generationConfig")
    stops = field(config, "stopSequences")
    return Prompt(
        texts=texts,
        last_user_text=last_user,
        last_is_user=last.get("role", "user") == "user" and not results,
        tool_result=" ".join(results) if results else None,
        tools=tools,
        forced_tool=allowed[0] if mode == "ANY" and allowed else None,
        tools_disabled=mode == "NONE",
        stop=[s for s in stops if isinstance(s, str)] if isinstance(stops, list) else (),
        max_tokens=field(config, "maxOutputTokens"),
        json_mode=field(config, "responseMimeType") == "application/json",
    )


class FakeGemini(FakeUpstream):
    name = "fake-gemini"
    default_key = "fake-gemini-key"

    def routes(self) -> list[web.RouteDef]:
        return [web.post(r"/{version:v1(?:beta|alpha)?}/models/{target}", self.dispatch)]

    def error(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> web.Response:
        err = {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}
        return json_response({"error": {**err, **extra}}, status, headers)

    def not_found(self, request: web.Request) -> web.Response:
        return self.error(404, f"Requested entity was not found. ({request.path})")

    def is_stream(self, request: web.Request, body: Any) -> bool:
        return request.match_info.get("target", "").endswith(":streamGenerateContent")

    def check_request(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if key == self.key:
            return None
        if not key:
            return self.error(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        return self.error(
            400, "API key not valid. Please pass a valid API key.", details=_KEY_INVALID_DETAILS
        )

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        model, _, action = request.match_info["target"].partition(":")
        body = request[BODY]
        if not isinstance(body, dict):
            return self.error(400, "Invalid JSON payload received.")
        if action in ("generateContent", "streamGenerateContent", "countTokens"):
            contents = body.get("contents")
            if not isinstance(contents, list) or not contents:
                return self.error(
                    400, "* GenerateContentRequest.contents: contents is not specified\n"
                )
            for c in contents:
                if not isinstance(c, dict) or c.get("role", "user") not in ("user", "model"):
                    return self.error(400, "Please use a valid role: user, model.")
            reply = make_reply(self.name, gemini_prompt(body))
            if action == "countTokens":
                return json_response({"totalTokens": reply.input_tokens})
            return await self._generate(request, body, model, reply)
        if action == "embedContent":
            return json_response({"embedding": self._embed(body)})
        if action == "batchEmbedContents":
            reqs = body.get("requests")
            if not isinstance(reqs, list) or not reqs:
                return self.error(400, "* BatchEmbedContentsRequest.requests: must not be empty\n")
            return json_response({"embeddings": [self._embed(r) for r in reqs]})
        return self.not_found(request)

    @staticmethod
    def _embed(req: Any) -> dict[str, list[float]]:
        text = parts_text(parts_of(field(req, "content")))
        return {"values": embedding(text, field(req, "outputDimensionality") or 8)}

    def _usage(self, reply: Reply, n: int) -> dict[str, Any]:
        out = reply.output_tokens * n
        usage: dict[str, Any] = {
            "promptTokenCount": reply.input_tokens,
            "candidatesTokenCount": out,
            "totalTokenCount": reply.input_tokens + out,
        }
        if self.cached_tokens > 0:
            usage["cachedContentTokenCount"] = self.cached_tokens
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": reply.input_tokens}]
        return usage

    async def _generate(
        self, request: web.Request, body: dict[str, Any], model: str, reply: Reply
    ) -> web.StreamResponse:
        n = field(field(body, "generationConfig"), "candidateCount") or 1
        usage = None if self.no_usage(request) else self._usage(reply, n)
        head = {"modelVersion": model, "responseId": rand_id(22)}
        finish = _FINISH[reply.finish]

        def response(parts: list[dict[str, Any]], last: bool) -> dict[str, Any]:
            candidates = []
            for i in range(n):
                cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
                if last:
                    cand["finishReason"] = finish
                cand["index"] = i
                candidates.append(cand)
            out: dict[str, Any] = {"candidates": candidates}
            if usage is not None:
                out["usageMetadata"] = usage if last else {"promptTokenCount": reply.input_tokens}
            return {**out, **head}

        if reply.tool is not None:
            call = {"functionCall": {"name": reply.tool, "args": reply.tool_args}}
            responses: Iterator[dict[str, Any]] = iter([response([call], True)])
        elif not self.is_stream(request, body):
            responses = iter([response([{"text": reply.text}], True)])
        else:
            pieces = reply.pieces or [""]
            responses = (
                response([{"text": p}], i == len(pieces) - 1) for i, p in enumerate(pieces)
            )
        if not self.is_stream(request, body):
            return json_response(next(responses))
        if request.query.get("alt") == "sse":
            return await self.stream(request, (sse(r) for r in responses))
        frames = ((b"[" if i == 0 else b",\r\n") + orjson.dumps(r) for i, r in enumerate(responses))
        return await self.stream(
            request, [*frames, b"]"], content_type="application/json", array_mode=True
        )
