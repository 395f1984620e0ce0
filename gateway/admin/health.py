"""Deployment health through the admin API: each routed deployment's circuit breaker,
cool-down and latency averages, and an operator's reset of them.

Health lives in the gateway process's memory (`gateway.routing.health`), so these answer from
the running gateway: the routes it serves now (`Gateway.routes`, reloaded on every change) and
the health of their deployments. Nothing is stored, but a reset is audited like any admin write.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from aiohttp import web

from appliance.errors import NotFoundError
from appliance.store import transaction
from gateway.admin.common import ADMIN_GATEWAY, actor, db, listing, ok
from gateway.routing import Deployment, Route
from gateway.state import Gateway
from gateway.tenancy.audit import record

# OpenAPI components of these routes (merged into the document by gateway.admin.openapi).
_INT: dict[str, Any] = {"type": "integer", "minimum": 0}
_NSTR: dict[str, Any] = {"type": "string", "nullable": True}
_MS: dict[str, Any] = {
    "type": "number",
    "nullable": True,
    "description": "moving average in ms; null until a success is measured",
}
# Health.status's fields, one for one (tests/gateway/admin/test_health.py holds them together).
_HEALTH: dict[str, dict[str, Any]] = {
    "state": {
        "type": "string",
        "enum": ["closed", "open", "half_open"],
        "description": "the circuit breaker; an open circuit past its cooldown is half_open: "
        "the next request probes it",
    },
    "available": {"type": "boolean", "description": "whether a request may be sent to it now"},
    "probe_in_flight": {"type": "boolean"},
    "retry_in_s": {
        "type": "number",
        "minimum": 0,
        "description": "seconds until it may be tried again; 0 when available",
    },
    "blocked_by": {
        "type": "string",
        "nullable": True,
        "enum": ["retry_after", "breaker", "probe", None],
        "description": "what retry_in_s waits for: a 429's cool-down, the open circuit, or "
        "the half-open probe in flight",
    },
    "consecutive_failures": _INT,
    "error_rate": {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": "failed share of the last window_outcomes attempts",
    },
    "window_outcomes": _INT,
    "window_size": {
        "type": "integer",
        "description": "the error rate opens the circuit once this many outcomes are in",
    },
    "opened_at": {**_NSTR, "description": "UTC; when the circuit last opened, null if closed"},
    "last_failure_kind": {
        "type": "string",
        "nullable": True,
        "enum": ["error", "timeout", "rate_limited", None],
    },
    "last_failure_at": {**_NSTR, "description": "UTC"},
    "ttft_ms": _MS,
    "latency_ms": _MS,
    "requests": {**_INT, "description": "attempts seen since the gateway started"},
    "successes": _INT,
    "failures": {**_INT, "description": "errors and timeouts"},
    "rate_limited": {**_INT, "description": "429s (a cool-down, not a failure)"},
}
_ENTRY: dict[str, dict[str, Any]] = {
    "route": {"type": "string", "description": "the route (or fallback model) alias"},
    "deployment_id": {"type": "string"},
    "position": {"type": "integer", "description": "0 is the first (highest priority)"},
    "provider": {"type": "string"},
    "upstream_model": {"type": "string"},
    "label": {"type": "string", "description": "provider/upstream_model"},
    "health": {"type": "object", "required": list(_HEALTH), "properties": _HEALTH},
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "DeploymentHealth": {"type": "object", "required": list(_ENTRY), "properties": _ENTRY}
}
LISTS = {"DeploymentHealthList": "DeploymentHealth"}
QUERY: dict[str, dict[str, Any]] = {
    "route": {"type": "string", "description": "only this route's deployments"},
}


def _entry(gw: Gateway, route: Route, d: Deployment, now: float, wall: float) -> dict[str, Any]:
    return {
        "route": route.alias,
        "deployment_id": d.id,
        "position": d.position,
        "provider": d.provider,
        "upstream_model": d.upstream_model,
        "label": d.label,
        "health": asdict(gw.health.status(d.id, now, wall)),
    }


def _entries(gw: Gateway, routes: Iterable[Route]) -> list[dict[str, Any]]:
    now, wall = time.monotonic(), time.time()  # monotonic: the clock the request path reports on
    return [
        _entry(gw, r, d, now, wall)
        for r in routes
        for d in sorted(r.deployments, key=lambda d: d.position)
    ]


def _routed(gw: Gateway) -> list[Route]:
    """The routes, by alias, and the plain models some route falls back to: what the router
    plans with health. Other plain models go straight to their provider and learn none."""
    fallbacks = {r.fallback_alias for r in gw.routes.values()}
    models = gw.snapshot.models
    return [r for a, r in sorted(gw.routes.items()) if a not in models or a in fallbacks]


def _route(gw: Gateway, alias: str) -> Route:
    route = gw.routes.get(alias)
    if route is None:
        raise NotFoundError(f"no route or model named {alias!r}; GET /admin/v1/routes lists them")
    return route


async def list_deployment_health(request: web.Request) -> web.Response:
    """GET /health/deployments[?route=]: every routed deployment's health."""
    gw = request.app[ADMIN_GATEWAY]
    alias = request.query.get("route")
    return listing(_entries(gw, _routed(gw) if alias is None else [_route(gw, alias)]))


async def route_health(request: web.Request) -> web.Response:
    """GET /routes/{alias}/health: the route's deployments in priority order."""
    gw = request.app[ADMIN_GATEWAY]
    return listing(_entries(gw, [_route(gw, request.match_info["alias"])]))


async def reset_deployment_health(request: web.Request) -> web.Response:
    """POST /health/deployments/{id}/reset: close the breaker and end the cool-down (after the
    operator fixed the cause, such as a provider's key); averages and counts stay."""
    gw = request.app[ADMIN_GATEWAY]
    dep_id = request.match_info["id"]
    found = next(
        ((r, d) for r in gw.routes.values() for d in r.deployments if d.id == dep_id), None
    )
    if found is None:
        raise NotFoundError(
            f"no deployment with id {dep_id!r}; GET /admin/v1/health/deployments lists them"
        )
    route, d = found
    now, wall = time.monotonic(), time.time()
    before = asdict(gw.health.status(dep_id, now, wall))
    store = db(request)
    # The write lock first: a busy store refuses before the reset, so none goes unaudited.
    with transaction(store):
        gw.health.reset(dep_id)
        entry = _entry(gw, route, d, now, wall)
        record(store, actor(request), "reset", "deployment_health", dep_id, before, entry["health"])
    return ok(entry)
