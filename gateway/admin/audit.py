"""The audit trail through the admin API: verify both chains, search, export, one request.

- `POST /audit/verify` walks the admin trail and the ledger (`gateway.audit.verify`) and
  answers `ok` or the first bad record of each; `GET /audit/verify` is the older quick check
  of the admin trail alone.
- `GET /audit/requests` searches ledger records, `GET /audit/events` admin events; with
  `format=jsonl` either streams every match as JSON Lines (an export) instead of one page.
- `GET /audit/requests/{trace_id}` is one request's timeline: its ledger record(s) and the
  admin events on its key around that time.
- `GET /audit/requests/{trace_id}/content` is the request's retained content
  (`gateway.retention`), decrypted; every read, answered or refused, is itself audited
  (`content.read`), without the content.

Every read runs on a worker thread with a read-only connection of its own: walking millions of
ledger records takes seconds, which must not stall the event loop that serves requests.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from aiohttp import web

from appliance.errors import NotFoundError
from appliance.store import transaction
from gateway.admin.body import Field, query_int, read_object, take
from gateway.admin.common import ADMIN_GATEWAY, actor, db, ok
from gateway.admin.errors import AdminError
from gateway.audit import search
from gateway.audit.heads import parse_heads, stored_heads
from gateway.audit.verify import verify, verify_admin
from gateway.errors import InvalidRequest
from gateway.ledger.reports import parse_time
from gateway.retention import MODES
from gateway.retention import read as retained
from gateway.retention.sealing import ContentUnreadable, KeyUnavailable
from gateway.tenancy.audit import record

T = TypeVar("T")
MAX_PAGE = 1000
EXPORT_PAGE = 1000
JSONL = "application/x-ndjson"

VERIFY = {
    "logged_head": Field(
        "string",
        schema={
            "type": "string",
            "description": "a head line from the system log ('audit head: admin id=… "
            "hash=…; ledger id=… hash=…'), checked instead of the heads kept in the database",
        },
    )
}

# OpenAPI components of these routes (merged into the document by gateway.admin.openapi).
_STR: dict[str, Any] = {"type": "string"}
_NSTR: dict[str, Any] = {"type": "string", "nullable": True}
_INT: dict[str, Any] = {"type": "integer"}
_NINT: dict[str, Any] = {"type": "integer", "nullable": True}
_HEAD: dict[str, Any] = {
    "type": "object",
    "required": ["id", "hash"],
    "properties": {"id": _INT, "hash": _NSTR},
}
_PROBLEM: dict[str, Any] = {
    "type": "object",
    "nullable": True,
    "required": ["table", "id", "kind", "message"],
    "properties": {
        "table": {"type": "string", "enum": ["audit", "usage"]},
        "id": _INT,
        "kind": {
            "type": "string",
            "enum": ["edited", "deleted", "reordered", "truncated", "rewritten"],
        },
        "message": _STR,
    },
}
_CHAIN: dict[str, Any] = {
    "type": "object",
    "required": ["ok", "records", "head", "logged_head", "problem"],
    "properties": {
        "ok": {"type": "boolean"},
        "records": {"type": "integer", "description": "records verified"},
        "head": {**_HEAD, "description": "the last record verified"},
        "logged_head": {**_HEAD, "nullable": True, "description": "the head checked against"},
        "problem": _PROBLEM,
        "start": {
            "type": "object",
            "nullable": True,
            "description": "ledger: the retention anchor the chain starts from",
            "properties": {"first_id": _INT, "last_id": _INT, "hash": _STR},
        },
        "unchained": {"type": "integer", "description": "ledger: records from before the chain"},
    },
}
# A ledger record as stored (the fields its hash covers), one per request.
_LEDGER_RECORD: dict[str, dict[str, Any]] = {
    **{c: _INT for c in ("id", "stream", "status", "input_tokens", "output_tokens")},
    **{c: _INT for c in ("cached_tokens", "estimated", "cost_micros", "priced", "cache_hit")},
    **{c: _INT for c in ("attempts", "saved_micros")},
    **{c: _STR for c in ("trace_id", "ts", "api", "endpoint", "model")},
    "latency_ms": {"type": "number"},
    "ttft_ms": {"type": "number", "nullable": True},
    **{c: _NSTR for c in ("provider", "upstream_model", "error", "key_id", "project")},
    **{c: _NSTR for c in ("department", "user", "tags", "deployment", "route_reason")},
    "detectors": _NSTR,
    "hash": {**_NSTR, "description": "the ledger chain's hash (null: from before the chain)"},
}
_PAGE_FIELDS: dict[str, Any] = {
    "next_cursor": {**_NINT, "description": "pass as cursor for the next page"},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


SCHEMAS: dict[str, dict[str, Any]] = {
    "AuditVerifyReport": _obj(
        ["ok", "problem", "admin", "ledger", "logged_at"],
        ok={"type": "boolean"},
        problem={**_PROBLEM, "description": "the first bad record found, admin trail first"},
        admin=_CHAIN,
        ledger=_CHAIN,
        logged_at={
            **_NSTR,
            "description": "when the heads checked against were logged ('given': in the body)",
        },
    ),
    "LedgerRecord": _obj(
        [c for c, s in _LEDGER_RECORD.items() if not s.get("nullable")], **_LEDGER_RECORD
    ),
    "AuditRequestPage": _obj(
        ["data", "next_cursor", "since", "until"],
        data={"type": "array", "items": _ref("LedgerRecord")},
        since={"type": "string", "description": "the time range searched"},
        until=_STR,
        **_PAGE_FIELDS,
    ),
    "AuditEventPage": _obj(
        ["data", "next_cursor"],
        data={"type": "array", "items": _ref("AuditEntry")},
        **_PAGE_FIELDS,
    ),
    "AuditTimeline": _obj(
        ["trace_id", "requests", "events", "events_since", "events_until"],
        trace_id=_STR,
        requests={"type": "array", "items": _ref("LedgerRecord")},
        events={
            "type": "array",
            "items": _ref("AuditEntry"),
            "description": "admin events on the request's key, a day either side",
        },
        events_since=_STR,
        events_until=_STR,
    ),
    "AuditContent": _obj(
        ["trace_id", "project", "kind", "ts", "purge_after", "content", "records"],
        trace_id=_STR,
        project=_STR,
        kind={"type": "string", "enum": [m for m in MODES if m != "none"]},
        ts={"type": "string", "description": "when the request finished (UTC)"},
        purge_after={"type": "string", "description": "when the record is purged (UTC)"},
        content={
            "type": "object",
            "description": "metadata: the request's shape (parameters, roles, sizes, detectors, "
            "status, usage; no text); full: {metadata, request (as the client sent it, before "
            "masking), response (as the client received it; null when a stream did not end "
            "whole)}",
        },
        records={
            "type": "integer",
            "description": "records kept under this trace id (a client's own id may repeat); "
            "this is the newest",
        },
    ),
}
LISTS: dict[str, str] = {}
QUERY: dict[str, dict[str, Any]] = {
    "trace_id": {
        "type": "string",
        "description": "a trace id (x-request-id); one made by this gateway also narrows the "
        "time range to 10 minutes either side of its time",
    },
    "status": {"type": "string", "description": "a code (429), a class (4xx), or error (>= 400)"},
    "action": {"type": "string", "description": "e.g. create, update, ledger.retention"},
    "object_id": _STR,
    "cursor": {"type": "integer", "minimum": 1, "description": "next_cursor of a page"},
    "order": {"type": "string", "enum": list(search.ORDERS), "default": "desc"},
}


async def _read(request: web.Request, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` on a thread with a read-only connection to the box's database."""
    path = request.app[ADMIN_GATEWAY].cfg.database_path

    def run() -> T:
        conn = sqlite3.connect(
            path.as_uri() + "?mode=ro", uri=True, timeout=10.0, isolation_level=None
        )
        try:
            return fn(conn)
        finally:
            conn.close()

    return await asyncio.to_thread(run)


# --- verify ---------------------------------------------------------------------------------


async def verify_chains(request: web.Request) -> web.Response:
    """POST /audit/verify: walk both chains; `ok`, or the first bad record of each."""
    fields = take(await read_object(request), VERIFY)
    logged = None
    if "logged_head" in fields:
        try:
            logged = parse_heads(fields["logged_head"])
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="logged_head") from None
    report = await _read(request, lambda conn: verify(conn, logged))
    return ok(report.to_json())


async def verify_admin_chain(request: web.Request) -> web.Response:
    """GET /audit/verify: the admin trail's chain only; `first_broken_id` is null when intact."""

    def run(conn: sqlite3.Connection) -> int | None:
        stored = stored_heads(conn)
        problem = verify_admin(conn, stored.admin if stored else None).problem
        return None if problem is None else problem.id

    broken = await _read(request, run)
    return ok({"ok": broken is None, "first_broken_id": broken})


# --- search ---------------------------------------------------------------------------------


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    when = parse_time(raw, name, request.app[ADMIN_GATEWAY].cfg.box.timezone)
    if not 1970 <= when.astimezone(UTC).year <= 9000:
        raise InvalidRequest(f"{name!r} must be between 1970 and 9000", param=name)
    return when


def _choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str:
    value = request.query.get(name, choices[0])
    if value not in choices:
        raise InvalidRequest(f"{name!r} must be one of {', '.join(choices)}", param=name)
    return value


def _request_query(request: web.Request) -> search.RequestQuery:
    q = request.query
    status = q.get("status")
    if status is not None:
        try:
            search.status_clause(status)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="status") from None
    since, until = _time(request, "since"), _time(request, "until")
    if since is not None and until is not None and until <= since:
        raise InvalidRequest("'until' must be after 'since'", param="until")
    return search.RequestQuery(
        trace_id=q.get("trace_id"),
        key=q.get("key"),
        user=q.get("user"),
        project=q.get("project"),
        status=status,
        since=since,
        until=until,
    )


def _event_query(request: web.Request) -> search.EventQuery:
    q = request.query
    return search.EventQuery(
        actor=q.get("actor"),
        action=q.get("action"),
        object_type=q.get("object_type"),
        object_id=q.get("object_id"),
        since=_time(request, "since"),
        until=_time(request, "until"),
    )


PageFn = Callable[[sqlite3.Connection, int, int | None], search.Page]


def _call(page: PageFn, size: int, cursor: int | None, conn: sqlite3.Connection) -> search.Page:
    return page(conn, size, cursor)


async def _answer(request: web.Request, page: PageFn, ranged: bool) -> web.StreamResponse:
    """One page as JSON (with the time range searched when `ranged`), or with format=jsonl
    every match from `cursor` on as JSON Lines."""
    fmt = _choice(request, "format", ("json", "jsonl"))
    cursor = query_int(request, "cursor", None, 1, 2**63 - 1)
    if fmt == "json":
        limit = query_int(request, "limit", 100, 1, MAX_PAGE) or 100
        got = await _read(request, lambda conn: page(conn, limit, cursor))
        answer: dict[str, Any] = {"data": got.rows, "next_cursor": got.cursor}
        if ranged:
            answer.update(since=search.iso(got.since), until=search.iso(got.until))
        return ok(answer)
    left = query_int(request, "limit", None, 1, 2**63 - 1)
    response = web.StreamResponse(headers={"Content-Type": JSONL})
    await response.prepare(request)
    while left is None or left > 0:
        size = EXPORT_PAGE if left is None else min(left, EXPORT_PAGE)
        got = await _read(request, functools.partial(_call, page, size, cursor))
        await response.write(b"".join(orjson.dumps(row) + b"\n" for row in got.rows))
        left = None if left is None else left - len(got.rows)
        cursor = got.cursor
        if cursor is None:
            break
    await response.write_eof()
    return response


async def search_requests(request: web.Request) -> web.StreamResponse:
    """GET /audit/requests: ledger records by trace id, key, user, project, status and time."""
    q = _request_query(request)
    order = _choice(request, "order", search.ORDERS)
    now = datetime.now(UTC)  # one range for every page of an export
    return await _answer(
        request,
        lambda conn, limit, cursor: search.search_requests(
            conn, q, limit=limit, cursor=cursor, order=order, now=now
        ),
        ranged=True,
    )


async def search_events(request: web.Request) -> web.StreamResponse:
    """GET /audit/events: admin events by actor, action, object and time."""
    q = _event_query(request)
    order = _choice(request, "order", search.ORDERS)
    return await _answer(
        request,
        lambda conn, limit, cursor: search.search_events(
            conn, q, limit=limit, cursor=cursor, order=order
        ),
        ranged=False,
    )


async def request_timeline(request: web.Request) -> web.Response:
    """GET /audit/requests/{trace_id}: the request's ledger record(s) and the admin events on
    its key around that time."""
    trace_id = request.match_info["trace_id"]
    since, until = _time(request, "since"), _time(request, "until")
    found = await _read(request, lambda conn: search.timeline(conn, trace_id, since, until))
    if found is None:
        raise NotFoundError(
            f"no ledger record has trace id {trace_id!r} in the range searched (for an id not "
            "made by this gateway: the last 24 hours; give since and until to search further)"
        )
    return ok(found)


# --- retained content -----------------------------------------------------------------------

CONTENT_READ = "content.read"


def _content_refused(exc: KeyUnavailable) -> AdminError:
    """Why sealed content cannot be opened: the vault's state (503, for an administrator to
    change), or its key gone (500: the content is lost)."""
    if exc.reason in ("sealed", "no_vault"):
        code = "vault_sealed" if exc.reason == "sealed" else "vault_unavailable"
        return AdminError(503, code, str(exc))
    return AdminError(500, "content_key_unavailable", str(exc))


def _audit_read(request: web.Request, trace_id: str, after: dict[str, Any]) -> None:
    store = db(request)
    with transaction(store):
        record(store, actor(request), CONTENT_READ, "request", trace_id, None, after)


async def request_content(request: web.Request) -> web.Response:
    """GET /audit/requests/{trace_id}/content: the request's retained content, decrypted (the
    newest record when a trace id repeats). Every call leaves an audit record of who read
    what and how it went, never the content; no content leaves unless that record is written."""
    trace_id = request.match_info["trace_id"]
    outcome: dict[str, Any] = {"outcome": "error"}
    try:
        stored = await _read(request, lambda conn: retained.records(conn, trace_id))
        if not stored:
            reason, message = await _read(
                request, lambda conn: retained.why_missing(conn, trace_id)
            )
            outcome = {"outcome": reason}
            raise AdminError(404, "not_found", message, {"reason": reason})
        newest = stored[0]
        outcome = {"project": newest.project, "kind": newest.kind, "records": len(stored)}
        try:
            found = retained.open_record(request.app[ADMIN_GATEWAY].vault, newest)
        except KeyUnavailable as exc:
            outcome["outcome"] = exc.reason
            raise _content_refused(exc) from None
        except ContentUnreadable as exc:
            outcome["outcome"] = "unreadable"
            raise AdminError(500, "content_unreadable", str(exc)) from None
        outcome["outcome"] = "ok"
    finally:
        _audit_read(request, trace_id, outcome)
    return ok({**found, "records": len(stored)})
