"""Spend reports, the ROI view and outcomes: what finance reads and records.

Reports run on a worker thread with a read-only connection of their own: a report over months
of rollups takes tens to hundreds of milliseconds, which must not stall the event loop that
serves the gateway's requests (SQLite's WAL lets the reader run beside the writer).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from aiohttp import web

from gateway.admin.body import Field, query_int, read_object, take
from gateway.admin.common import ADMIN_GATEWAY, actor, db, listing, ok
from gateway.errors import InvalidRequest
from gateway.ledger import outcomes, reports
from gateway.ledger.hours import ceil_hour, ts_text
from gateway.state import Gateway

T = TypeVar("T")
DEFAULT_RANGE = timedelta(days=30)
MAX_OUTCOMES = 1000
FORMATS = ("json", "csv")

OUTCOME_CREATE = {
    "trace_id": Field("string?"),
    "tag": Field("string?"),
    "business_line": Field("string", required=True),
    "value_micros": Field("integer", required=True),
    "note": Field("string"),
}


def _gateway(request: web.Request) -> Gateway:
    return request.app[ADMIN_GATEWAY]


async def _read(request: web.Request, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` on a thread with a read-only connection to the box's database."""
    path = _gateway(request).cfg.database_path

    def run() -> T:
        conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=10.0)
        try:
            return fn(conn)
        finally:
            conn.close()

    return await asyncio.to_thread(run)


def _range(request: web.Request) -> tuple[datetime, datetime]:
    """since/until from the query (a date is midnight in the box's zone); the last 30 days
    by default."""
    tz = _gateway(request).cfg.box.timezone
    q = request.query
    until = reports.parse_time(q["until"], "until", tz) if "until" in q else datetime.now(UTC)
    since = reports.parse_time(q["since"], "since", tz) if "since" in q else None
    for name, when in (("since", since), ("until", until)):
        if when is not None and not 1970 <= when.astimezone(UTC).year <= 9000:
            raise InvalidRequest(f"{name!r} must be between 1970 and 9000", param=name)
    return (since if since is not None else until - DEFAULT_RANGE), until


def _format(request: web.Request) -> str:
    fmt = request.query.get("format", "json")
    if fmt not in FORMATS:
        raise InvalidRequest("'format' must be json or csv", param="format")
    return fmt


def _csv(text: str, name: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def spend_report(request: web.Request) -> web.StreamResponse:
    """GET /reports/spend: requests, tokens and cost grouped by dimensions and time buckets."""
    gw = _gateway(request)
    q = request.query
    group_by = [g.strip() for g in q.get("group_by", "").split(",") if g.strip()]
    since, until = _range(request)
    bucket = q.get("bucket") or None
    top = query_int(request, "top", None, 1, reports.MAX_TOP)
    fmt = _format(request)
    filters = {name: q[name] for name in reports.DIMENSIONS if name in q}
    tz = gw.cfg.box.timezone
    rows = await _read(
        request,
        lambda conn: reports.spend_report(
            conn,
            group_by=group_by,
            since=since,
            until=until,
            bucket=bucket,
            top=top,
            tz=tz,
            filters=filters,
        ),
    )
    columns = reports.spend_columns(group_by, bucket, reports.uses_tags(group_by, filters))
    if fmt == "csv":
        return _csv(reports.to_csv(rows, columns, gw.cfg.box.currency), "spend")
    return ok(
        {
            "since": _iso(ceil_hour(since)),
            "until": _iso(ceil_hour(until)),
            "timezone": tz,
            "bucket": bucket,
            "group_by": group_by,
            "currency": gw.cfg.box.currency,
            "columns": columns,
            "data": rows,
        }
    )


async def roi_report(request: web.Request) -> web.StreamResponse:
    """GET /reports/roi: cost against recorded business value, per business line."""
    gw = _gateway(request)
    since, until = _range(request)
    fmt = _format(request)
    rows = await _read(request, lambda conn: reports.roi_report(conn, since=since, until=until))
    if fmt == "csv":
        return _csv(reports.to_csv(rows, reports.ROI_COLUMNS, gw.cfg.box.currency), "roi")
    return ok(
        {
            "since": _iso(since),
            "until": _iso(until),
            "currency": gw.cfg.box.currency,
            "data": rows,
        }
    )


async def create_outcome(request: web.Request) -> web.Response:
    """POST /outcomes: attach a business value to a trace id or a tag (audited)."""
    fields = take(await read_object(request), OUTCOME_CREATE)
    row = outcomes.add_outcome(db(request), actor(request), **fields)
    return ok(row, 201)


async def list_outcomes(request: web.Request) -> web.Response:
    """GET /outcomes: newest first, by time range and business line."""
    tz = _gateway(request).cfg.box.timezone
    q = request.query
    bounds = {
        name: ts_text(reports.parse_time(q[name], name, tz)) if name in q else None
        for name in ("since", "until")
    }
    limit = query_int(request, "limit", 100, 1, MAX_OUTCOMES) or 100
    rows = outcomes.list_outcomes(
        db(request), business_line=q.get("business_line"), limit=limit, **bounds
    )
    return listing(rows)
