"""What the admin handlers share: the gateway, the caller, JSON responses."""

from __future__ import annotations

from typing import Any

import orjson
import sqlite_utils
from aiohttp import web

from gateway.admin.auth import Principal
from gateway.state import Gateway

ADMIN_GATEWAY: web.AppKey[Gateway] = web.AppKey("admin_gateway", Gateway)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("admin_principal", Principal)
OPENAPI: web.AppKey[bytes] = web.AppKey("admin_openapi", bytes)


def db(request: web.Request) -> sqlite_utils.Database:
    """The gateway's store connection (admin traffic is light; a query per request is fine)."""
    return request.app[ADMIN_GATEWAY].db


def actor(request: web.Request) -> str:
    """The audit trail's name for the caller."""
    return request[PRINCIPAL].actor


def ok(data: Any, status: int = 200) -> web.Response:
    """A JSON response."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def listing(rows: list[dict[str, Any]], **extra: Any) -> web.Response:
    """A list endpoint's answer: `{"data": [...]}` plus any paging fields."""
    return ok({"data": rows, **extra})


def no_content() -> web.Response:
    """204, for deletes."""
    return web.Response(status=204)
