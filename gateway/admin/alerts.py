"""Alerts, webhooks and suspensions through the admin API.

Alerts are listed and acknowledged; webhooks are created (their URL goes to the vault and is
never shown again), listed, deleted and test-sent; the spend breaker's suspensions are listed
and lifted, after which the gateway reloads and admits the key or project again at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from appliance.errors import NotFoundError
from appliance.store import utcnow
from gateway.admin.body import Field, query_int, read_object, take
from gateway.admin.common import ADMIN_GATEWAY, actor, db, listing, no_content, ok
from gateway.errors import InvalidRequest
from gateway.governance import store, webhooks
from gateway.governance.alerts import SEVERITIES

WEBHOOK_CREATE = {
    "name": Field("string", True),
    "format": Field("string", True),
    "url": Field("string", True),
}
MAX_PAGE = 1000

_STR: dict[str, Any] = {"type": "string"}
_NSTR: dict[str, Any] = {"type": "string", "nullable": True}
_INT: dict[str, Any] = {"type": "integer"}
_DELIVERY: dict[str, dict[str, Any]] = {
    "webhook_id": _STR,
    "attempts": _INT,
    "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
    "next_at": _NSTR,
    "last_error": _NSTR,
}
_ALERT: dict[str, dict[str, Any]] = {
    "id": _INT,
    "ts": _STR,
    "kind": {"type": "string", "description": "budget_threshold, spend_breaker, ..."},
    "severity": {"type": "string", "enum": list(SEVERITIES)},
    "subject": {"type": "string", "description": "what it is about, e.g. project:web"},
    "dedup_key": _STR,
    "message": _STR,
    "details": {"type": "object"},
    "acknowledged_at": _NSTR,
    "acknowledged_by": _NSTR,
    "deliveries": {
        "type": "array",
        "items": {"type": "object", "required": list(_DELIVERY), "properties": _DELIVERY},
    },
}
_WEBHOOK: dict[str, dict[str, Any]] = {
    "id": _STR,
    "name": _STR,
    "format": {"type": "string", "enum": list(webhooks.FORMATS)},
    "display": {"type": "string", "description": "the URL's scheme and host; the URL is secret"},
    "enabled": {"type": "boolean"},
    "created_at": _STR,
}
_SUSPENSION: dict[str, dict[str, Any]] = {
    "id": _INT,
    "level": {"type": "string", "enum": ["project", "key"]},
    "target": _STR,
    "reason": _STR,
    "created_at": _STR,
    "lifted_at": _NSTR,
    "lifted_by": _NSTR,
}


def _obj(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(props), "properties": props}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Alert": _obj(_ALERT),
    "AlertPage": {
        "type": "object",
        "required": ["data", "next_before_id"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}},
            "next_before_id": {"type": "integer", "nullable": True},
        },
    },
    "Webhook": _obj(_WEBHOOK),
    "WebhookTest": _obj({"webhook_id": _STR, "delivered": {"type": "boolean"}, "error": _NSTR}),
    "Suspension": _obj(_SUSPENSION),
}
LISTS = {"WebhookList": "Webhook", "SuspensionList": "Suspension"}
QUERY: dict[str, dict[str, Any]] = {
    "kind": _STR,
    "severity": {"type": "string", "enum": list(SEVERITIES)},
    "acknowledged": {"type": "boolean"},
    "active": {"type": "boolean"},
}


def _flag(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false"):
        raise InvalidRequest(f"query parameter {name!r} must be true or false", param=name)
    return raw.lower() == "true"


def _since(request: web.Request) -> str | None:
    """`?since=` as the alerts table's UTC text (a time without a zone is UTC)."""
    raw = request.query.get("since")
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw)
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(
            "query parameter 'since' must be an ISO-8601 time such as 2025-01-31T00:00:00Z",
            param="since",
        ) from None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _int_id(request: web.Request, what: str) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFoundError(f"no {what} with id {raw!r}")
    return int(raw)


# --- alerts -------------------------------------------------------------------------------


async def list_alerts(request: web.Request) -> web.Response:
    """GET /alerts: newest first, by kind, severity, acknowledged, since; paged."""
    limit = query_int(request, "limit", 100, 1, MAX_PAGE) or 100
    q = request.query
    rows = store.list_alerts(
        db(request),
        kind=q.get("kind"),
        severity=q.get("severity"),
        acknowledged=_flag(request, "acknowledged"),
        since=_since(request),
        limit=limit,
        before_id=query_int(request, "before_id", None, 1, 2**63 - 1),
    )
    next_id = rows[-1]["id"] if len(rows) == limit else None
    return listing(rows, next_before_id=next_id)


async def get_alert(request: web.Request) -> web.Response:
    """GET /alerts/{id}."""
    return ok(store.get_alert(db(request), _int_id(request, "alert")))


async def acknowledge_alert(request: web.Request) -> web.Response:
    """POST /alerts/{id}/acknowledge."""
    alert_id = _int_id(request, "alert")
    return ok(store.acknowledge_alert(db(request), actor(request), alert_id))


# --- webhooks -----------------------------------------------------------------------------


async def list_webhooks(request: web.Request) -> web.Response:
    """GET /webhooks (never their URLs)."""
    return listing(webhooks.list_webhooks(db(request)))


async def create_webhook(request: web.Request) -> web.Response:
    """POST /webhooks: the URL goes to the vault; answers show only its scheme and host."""
    fields = take(await read_object(request), WEBHOOK_CREATE)
    vault = request.app[ADMIN_GATEWAY].vault
    return ok(webhooks.create_webhook(db(request), vault, actor(request), **fields), 201)


async def get_webhook(request: web.Request) -> web.Response:
    """GET /webhooks/{id}."""
    return ok(webhooks.get_webhook(db(request), request.match_info["id"]))


async def delete_webhook(request: web.Request) -> web.Response:
    """DELETE /webhooks/{id}: the URL leaves the vault too."""
    vault = request.app[ADMIN_GATEWAY].vault
    webhooks.delete_webhook(db(request), vault, actor(request), request.match_info["id"])
    return no_content()


async def test_webhook(request: web.Request) -> web.Response:
    """POST /webhooks/{id}/test: send a test alert once; says whether it was delivered."""
    gateway = request.app[ADMIN_GATEWAY]
    hook = webhooks.get_webhook(db(request), request.match_info["id"])
    try:
        await webhooks.send_test(
            gateway.vault, hook, gateway.cfg.box.name, gateway.cfg.alerts.webhook_timeout, utcnow()
        )
    except webhooks.DeliveryError as exc:
        return ok({"webhook_id": hook["id"], "delivered": False, "error": str(exc)})
    return ok({"webhook_id": hook["id"], "delivered": True, "error": None})


# --- suspensions --------------------------------------------------------------------------


async def list_suspensions(request: web.Request) -> web.Response:
    """GET /suspensions[?active=true|false]: newest first."""
    return listing(store.list_suspensions(db(request), _flag(request, "active")))


async def lift_suspension(request: web.Request) -> web.Response:
    """POST /suspensions/{id}/lift: the key or project may spend again (the gateway reloads)."""
    row = store.lift_suspension(db(request), actor(request), _int_id(request, "suspension"))
    request.app[ADMIN_GATEWAY].reload()
    return ok(row)
