"""Errors rendered in the envelope of the API the client called: OpenAI's or Anthropic's."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.errors import GatewayError

OPENAI = "openai"
ANTHROPIC = "anthropic"

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def openai_error(err: GatewayError) -> dict[str, Any]:
    """`{"error": {"message", "type", "param", "code"}}`."""
    return {
        "error": {
            "message": err.message,
            "type": err.openai_type,
            "param": err.param,
            "code": err.code,
        }
    }


def anthropic_error(err: GatewayError) -> dict[str, Any]:
    """`{"type": "error", "error": {"type", "message"}}`."""
    kind = _ANTHROPIC_TYPES.get(
        err.status, "api_error" if err.status >= 500 else "invalid_request_error"
    )
    return {"type": "error", "error": {"type": kind, "message": err.message}}


def error_body(api: str, err: GatewayError) -> dict[str, Any]:
    """The error object in the client's format."""
    return anthropic_error(err) if api == ANTHROPIC else openai_error(err)


def error_response(api: str, err: GatewayError, trace_id: str) -> web.Response:
    """A complete HTTP error response, with the trace id and any Retry-After."""
    headers = {"x-request-id": trace_id, "request-id": trace_id}
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    # Our own timeouts and outages are worth a client retry; bad input is not.
    # (A 429 without Retry-After is a total budget spent for good: retrying cannot help.)
    retry = err.status in (502, 503, 504) or (err.status == 429 and err.retry_after is not None)
    headers["x-should-retry"] = "true" if retry else "false"
    return web.Response(
        status=err.status,
        body=orjson.dumps(error_body(api, err)),
        content_type="application/json",
        headers=headers,
    )


def stream_error_frame(api: str, err: GatewayError) -> bytes:
    """An error once a stream has begun: an SSE frame each SDK turns into an exception."""
    payload = orjson.dumps(error_body(api, err))
    if api == ANTHROPIC:
        return b"event: error\ndata: " + payload + b"\n\n"
    return b"data: " + payload + b"\n\n"
