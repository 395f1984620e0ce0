"""What the endpoint handlers share: the app key for the gateway state and model resolution."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.auth import check_model
from gateway.body import optional, read_json, require
from gateway.calls import Call
from gateway.routing import Route
from gateway.state import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
CALL: web.RequestKey[Call] = web.RequestKey("call", Call)


async def begin(request: web.Request, endpoint: str) -> tuple[Gateway, Call, dict[str, Any]]:
    """Read the body and note which endpoint this call is."""
    gw = request.app[GATEWAY]
    call = request[CALL]
    call.endpoint = endpoint
    body = await read_json(request, gw.cfg.server.max_body_bytes)
    return gw, call, body


def route(gw: Gateway, call: Call, body: dict[str, Any]) -> Route:
    """Resolve the model alias to its route and check the key may use it."""
    alias = require(body, "model", str)
    call.model = alias
    call.stream = bool(optional(body, "stream", bool))
    if call.key is not None:
        check_model(call.key, alias)
    return gw.resolve(alias)
