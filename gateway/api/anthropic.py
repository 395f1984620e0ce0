"""The Anthropic-compatible endpoint: POST /v1/messages."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import begin, route
from gateway.body import check_messages, check_positive, optional, require
from gateway.errors import InvalidRequest
from gateway.routed import forward


async def messages(request: web.Request) -> web.StreamResponse:
    """POST /v1/messages."""
    gw, call, body = await begin(request, "messages")
    check_messages(body)
    require(body, "max_tokens", int)
    check_positive(body, "max_tokens")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequest("'system' must be a string or an array of text blocks", param="system")
    optional(body, "tools", list)
    optional(body, "stop_sequences", list)
    target = route(gw, call, body)
    return await forward(gw, request, call, target, body)
