"""Searching the audit trail: ledger records (one per request) and admin events.

The ledger (`usage`) is append-only with no index but its rowid, so that commits stay cheap.
Its rows come in time order, so a time range becomes an id range by binary search on `id`,
reading `ts` (`gateway.ledger.ids`: O(log n) point reads), and only that range is scanned
with the other filters. Without since/until the range is the last 24 hours, or, for a trace id
made by this gateway (time-ordered, `gateway.trace`), ten minutes either side of its time; a
trace id that finds nothing in its window is looked for in the last 24 hours too, since a
client's own id can look time-ordered by chance.

The admin trail (`audit`) holds one row per admin change and is scanned whole.

Rows are returned as stored, so an export can be re-hashed offline: ledger rows with every
column, admin events with `before` and `after` as JSON. Pages come newest first (`order`
"asc": oldest first); the `cursor` of the next page is the last id of this one.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from gateway.ledger.hours import ts_text
from gateway.ledger.ids import id_range
from gateway.trace import trace_time

DEFAULT_RANGE = timedelta(hours=24)
TRACE_WINDOW = timedelta(minutes=10)
# A request's timeline shows the admin events on its key from a day before to a day after.
EVENT_WINDOW = timedelta(hours=24)
TIMELINE_ROWS = 100
ORDERS = ("desc", "asc")
_STATUS_CLASS = re.compile(r"[1-5]xx")


@dataclass(frozen=True, slots=True)
class RequestQuery:
    """Filters over ledger records; None: any."""

    trace_id: str | None = None
    key: str | None = None
    user: str | None = None
    project: str | None = None
    status: str | None = None  # a code (429), a class (4xx), or "error" (>= 400)
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters over admin events; None: any."""

    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """Rows of one page, the cursor of the next (None: this is the last), the range searched."""

    rows: list[dict[str, Any]]
    cursor: int | None
    since: datetime | None
    until: datetime | None


def status_clause(raw: str) -> tuple[str, list[int]]:
    """The SQL condition for a status filter; ValueError for one that is not."""
    if raw.isdigit() and len(raw) == 3:
        return "status = ?", [int(raw)]
    if _STATUS_CLASS.fullmatch(raw):
        low = int(raw[0]) * 100
        return "status >= ? AND status < ?", [low, low + 100]
    if raw == "error":
        return "status >= ?", [400]
    raise ValueError("'status' must be a code (429), a class (4xx) or 'error' (400 and up)")


def request_range(q: RequestQuery, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The time range a ledger search scans: since/until as given, else the trace id's window,
    else the last 24 hours (up to now)."""
    now = now or datetime.now(UTC)
    if q.since is None and q.until is None and q.trace_id:
        at = trace_time(q.trace_id, now.timestamp())
        if at is not None:
            when = datetime.fromtimestamp(at, UTC)
            return when - TRACE_WINDOW, when + TRACE_WINDOW
    until = q.until or now
    return q.since or until - DEFAULT_RANGE, until


def search_requests(
    conn: sqlite3.Connection,
    q: RequestQuery,
    *,
    limit: int,
    cursor: int | None = None,
    order: str = "desc",
    now: datetime | None = None,
) -> Page:
    """One page of ledger records matching `q`."""
    since, until = request_range(q, now)
    page = _requests_page(conn, q, since, until, limit, cursor, order)
    if not page.rows and cursor is None and q.trace_id and q.since is None and q.until is None:
        since, until = request_range(RequestQuery(), now)  # not in its window: a client's id
        page = _requests_page(conn, q, since, until, limit, cursor, order)
    return page


def _requests_page(
    conn: sqlite3.Connection,
    q: RequestQuery,
    since: datetime,
    until: datetime,
    limit: int,
    cursor: int | None,
    order: str,
) -> Page:
    first, end = id_range(conn, since, until)
    if cursor is not None:
        first, end = (first, min(end, cursor)) if order == "desc" else (max(first, cursor + 1), end)
    # The id range holds the time range but for rows a clock step put out of order: the ts
    # bounds make the edges exact.
    where = ["id >= ?", "id < ?", "ts >= ?", "ts < ?"]
    args: list[Any] = [first, end, ts_text(since), ts_text(until)]
    for column, value in (
        ("trace_id", q.trace_id),
        ("key_id", q.key),
        ("user", q.user),
        ("project", q.project),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if q.status is not None:
        clause, values = status_clause(q.status)
        where.append(clause)
        args += values
    rows = _query(conn, "usage", where, args, order, limit)
    return Page(rows, _next(rows, limit), since, until)


def search_events(
    conn: sqlite3.Connection,
    q: EventQuery,
    *,
    limit: int,
    cursor: int | None = None,
    order: str = "desc",
) -> Page:
    """One page of admin events matching `q`."""
    where: list[str] = []
    args: list[Any] = []
    if cursor is not None:
        where.append("id < ?" if order == "desc" else "id > ?")
        args.append(cursor)
    for column, value in (
        ("actor", q.actor),
        ("action", q.action),
        ("object_type", q.object_type),
        ("object_id", q.object_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if q.since is not None:
        where.append("ts >= ?")
        args.append(ts_text(q.since))
    if q.until is not None:
        where.append("ts < ?")
        args.append(ts_text(q.until))
    rows = _query(conn, "audit", where, args, order, limit)
    for row in rows:
        for side in ("before", "after"):
            if row[side] is not None:
                row[side] = orjson.loads(row[side])
    return Page(rows, _next(rows, limit), q.since, q.until)


def timeline(
    conn: sqlite3.Connection,
    trace_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """A request's ledger record(s), oldest first, and the admin events on its key around
    them; None when no record has the trace id."""
    q = RequestQuery(trace_id=trace_id, since=since, until=until)
    rows = search_requests(conn, q, limit=TIMELINE_ROWS, order="asc", now=now).rows
    if not rows:
        return None
    keys = sorted({r["key_id"] for r in rows if r["key_id"]})
    start = _parse_ts(rows[0]["ts"]) - EVENT_WINDOW
    end = _parse_ts(rows[-1]["ts"]) + EVENT_WINDOW
    events: list[dict[str, Any]] = []
    for key in keys:
        events += search_events(
            conn,
            EventQuery(object_type="key", object_id=key, since=start, until=end),
            limit=1000,
            order="asc",
        ).rows
    events.sort(key=lambda e: e["id"])
    return {
        "trace_id": trace_id,
        "requests": rows,
        "events": events,
        "events_since": ts_text(start),
        "events_until": ts_text(end),
    }


def _query(
    conn: sqlite3.Connection, table: str, where: list[str], args: list[Any], order: str, limit: int
) -> list[dict[str, Any]]:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}")
    sql = f"SELECT * FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    cursor = conn.execute(f"{sql} ORDER BY id {order.upper()} LIMIT ?", [*args, limit])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _next(rows: list[dict[str, Any]], limit: int) -> int | None:
    return int(rows[-1]["id"]) if len(rows) == limit else None


def _parse_ts(ts: str) -> datetime:
    """A stored UTC timestamp (`2025-01-31T13:05:01.123Z`) as a datetime."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def iso(when: datetime | None) -> str | None:
    """A range bound for answers (UTC, seconds, Z)."""
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
