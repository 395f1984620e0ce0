"""Read-only views: the audit trail, per-request usage and the box's status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from appliance.files import version as _version
from appliance.migrations import SCHEMA_VERSION
from appliance.store import schema_version
from gateway.admin.body import query_int
from gateway.admin.common import OPENAPI, db, listing, ok
from gateway.catalog import catalog_version
from gateway.errors import InvalidRequest
from gateway.tenancy.audit import list_audit

MAX_PAGE = 1000
_COUNTED = ("departments", "projects", "users", "keys", "admin_tokens", "providers", "models")


async def audit(request: web.Request) -> web.Response:
    """GET /audit: newest first; `next_before_id` fetches the next (older) page."""
    limit = query_int(request, "limit", 100, 1, MAX_PAGE) or 100
    before_id = query_int(request, "before_id", None, 1, 2**63 - 1)
    q = request.query
    rows = list_audit(db(request), limit, before_id, q.get("object_type"), q.get("actor"))
    next_id = rows[-1]["id"] if len(rows) == limit else None
    return listing(rows, next_before_id=next_id)


def _time(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw)
        # Stored times are UTC with a Z, so compare as text in that same form.
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"query parameter {name!r} must be an ISO-8601 time such as 2025-01-31T00:00:00Z",
            param=name,
        ) from None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def usage(request: web.Request) -> web.Response:
    """GET /usage: per-request usage rows, newest first, by time range and model."""
    limit = query_int(request, "limit", 100, 1, MAX_PAGE) or 100
    where: list[str] = []
    args: list[Any] = []
    for name, sql in (("since", "ts >= ?"), ("until", "ts < ?")):
        value = _time(request, name)
        if value is not None:
            where.append(sql)
            args.append(value)
    if "model" in request.query:
        where.append("model = ?")
        args.append(request.query["model"])
    sql = "SELECT * FROM usage" + (" WHERE " + " AND ".join(where) if where else "")
    rows = list(db(request).query(sql + " ORDER BY id DESC LIMIT ?", [*args, limit]))
    for row in rows:
        row["stream"], row["estimated"] = bool(row["stream"]), bool(row["estimated"])
    return listing(rows)


async def status(request: web.Request) -> web.Response:
    """GET /status: software and schema versions, the change counter, object counts."""
    store = db(request)
    counts = {t: store.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in _COUNTED}
    counts["active_keys"] = store.execute(
        "SELECT count(*) FROM keys WHERE status = 'active'"
    ).fetchone()[0]
    return ok(
        {
            "version": _version(),
            "schema_version": schema_version(store.conn),
            "supported_schema_version": SCHEMA_VERSION,
            "catalog_version": catalog_version(store),
            "counts": counts,
        }
    )


async def openapi_json(request: web.Request) -> web.Response:
    """GET /openapi.json: the document that describes this API (built once, at start)."""
    return web.Response(body=request.app[OPENAPI], content_type="application/json")
