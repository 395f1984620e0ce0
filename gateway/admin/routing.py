"""Routes through the admin API: an alias served by deployments under a strategy.

A route is written whole with PUT (create or replace); `gateway.routing.store` validates it,
audits it and bumps the catalog version, and the running gateway reloads at once.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.admin.body import Field, read_object, take
from gateway.admin.common import ADMIN_GATEWAY, actor, db, listing, no_content, ok
from gateway.routing import STRATEGIES, store

_STR: dict[str, Any] = {"type": "string"}
_NSTR: dict[str, Any] = {"type": "string", "nullable": True}
_BOOL: dict[str, Any] = {"type": "boolean"}
_STRATEGY: dict[str, Any] = {
    "type": "string",
    "enum": list(STRATEGIES),
    "description": "how deployments are ordered per request",
}
_DEPLOYMENT_IN: dict[str, dict[str, Any]] = {
    "provider": {"type": "string", "description": "a provider of this box"},
    "upstream_model": {"type": "string", "description": "the provider's model name"},
    "weight": {"type": "integer", "minimum": 0, "default": 1, "description": "for weighted"},
    "params": {"type": "object", "description": "request parameters this deployment sets"},
    "context_window": {"type": "integer", "minimum": 1, "nullable": True},
    "tools": {**_BOOL, "default": True},
    "vision": {**_BOOL, "default": False},
    "json_mode": {**_BOOL, "default": True},
    "confidential": {**_BOOL, "default": False, "description": "trusted with confidential data"},
}
_WHEN: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "every condition given must hold",
    "properties": {
        "min_prompt_tokens": {"type": "integer", "minimum": 0},
        "max_prompt_tokens": {"type": "integer", "minimum": 0},
        "tools": _BOOL,
        "code": _BOOL,
        "keywords": {"type": "array", "items": _STR},
        "hint": {"type": "string", "description": "the x-aigw-route-hint value"},
    },
}
_TIER: dict[str, Any] = {
    "type": "object",
    "required": ["name", "use"],
    "additionalProperties": False,
    "properties": {
        "name": _STR,
        "when": _WHEN,
        "use": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "description": "positions of deployments (0 is the first)",
        },
    },
}
_TIERS: dict[str, Any] = {
    "type": "array",
    "items": _TIER,
    "description": "the first tier whose conditions hold picks the deployments to use",
}

ROUTE_PUT = {
    "strategy": Field("string", True),
    "deployments": Field(
        "objects",
        True,
        {
            "type": "array",
            "description": "in priority order",
            "items": {
                "type": "object",
                "required": ["provider", "upstream_model"],
                "additionalProperties": False,
                "properties": _DEPLOYMENT_IN,
            },
        },
    ),
    "fallback_alias": Field("string?"),
    "tiers": Field("objects", schema=_TIERS),
    "max_attempts": Field("integer"),
    "max_seconds": Field("number"),
}

# OpenAPI components of these routes (merged into the document by gateway.admin.openapi).
_DEPLOYMENT: dict[str, dict[str, Any]] = {
    "id": {"type": "string", "description": "dep_...; kept while provider and model stay"},
    "position": {"type": "integer", "description": "0 is the first (highest priority)"},
    **_DEPLOYMENT_IN,
}
_ROUTE: dict[str, dict[str, Any]] = {
    "alias": _STR,
    "strategy": _STRATEGY,
    "deployments": {
        "type": "array",
        "items": {"type": "object", "required": list(_DEPLOYMENT), "properties": _DEPLOYMENT},
    },
    "fallback_alias": {**_NSTR, "description": "a route or model used when all are down"},
    "tiers": _TIERS,
    "max_attempts": {"type": "integer", "minimum": 1},
    "max_seconds": {"type": "number"},
    "created_at": _STR,
    "updated_at": _STR,
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "Route": {"type": "object", "required": list(_ROUTE), "properties": _ROUTE}
}
LISTS = {"RouteList": "Route"}
QUERY: dict[str, dict[str, Any]] = {}


async def list_routes(request: web.Request) -> web.Response:
    """GET /routes."""
    return listing(store.list_routes(db(request)))


async def get_route(request: web.Request) -> web.Response:
    """GET /routes/{alias}."""
    return ok(store.get_route(db(request), request.match_info["alias"]))


async def put_route(request: web.Request) -> web.Response:
    """PUT /routes/{alias}: create or replace the route with all its deployments."""
    f = take(await read_object(request), ROUTE_PUT)
    alias = request.match_info["alias"]
    route = store.put_route(db(request), actor(request), alias=alias, **f)
    request.app[ADMIN_GATEWAY].reload()
    return ok(route)


async def delete_route(request: web.Request) -> web.Response:
    """DELETE /routes/{alias}: refused while another route falls back to it."""
    store.delete_route(db(request), actor(request), request.match_info["alias"])
    request.app[ADMIN_GATEWAY].reload()
    return no_content()
