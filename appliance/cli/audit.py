"""`aigw audit`: the audit trail. Alone it lists admin changes, newest first; its commands verify
both hash chains, search ledger records and admin events, show one request (and its retained
content), and export.

Searches page through the admin API (`cursor`), so an export of any size holds one page at a
time; `--since`/`--until` take ISO times, dates, or a duration ago (`2h`, `7d`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from appliance.admin_client import segment
from appliance.cli._common import (
    Ctx,
    SubParsers,
    add_json,
    emit_object,
    emit_rows,
    print_json,
    seconds,
)
from appliance.errors import ApplianceError

AUDIT_COLUMNS = ["id", "ts", "actor", "action", "object_type", "object_id"]
REQUEST_COLUMNS = ["id", "ts", "trace_id", "status", "model", "key_id", "user", "project"]
PAGE = 1000
VERIFY_TIMEOUT = 3600.0
_REQUEST_FILTERS = ("trace_id", "key", "user", "project", "status")
_EVENT_FILTERS = ("actor", "action", "object_type", "object_id")
_WHEN_HELP = "an ISO time, a date, or a duration ago (2h, 7d)"


def register_audit(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """Add `aigw audit` and its commands."""
    audit = sub.add_parser(
        "audit",
        parents=[common],
        help="the audit trail: list, verify, search, show, content, export",
    )
    audit.add_argument("--limit", type=int, help="rows (default 100, at most 1000)")
    audit.add_argument("--object-type", help="department, project, user, key, provider, ...")
    audit.add_argument("--actor", help="e.g. token:adm_..., local:uid=0")
    add_json(audit)
    audit.set_defaults(func=show_audit)
    verbs = audit.add_subparsers(dest="audit_command", metavar="COMMAND")

    verify = verbs.add_parser(
        "verify", parents=[common], help="check both hash chains (exit status 1 when broken)"
    )
    verify.add_argument(
        "--logged-head",
        metavar="LINE",
        help="an 'audit head: ...' line from the system log, checked instead of the heads the "
        "database keeps",
    )
    verify.add_argument(
        "--timeout", type=float, default=VERIFY_TIMEOUT, help="seconds to wait (default 3600)"
    )
    add_json(verify)
    verify.set_defaults(func=verify_chains)

    search = verbs.add_parser(
        "search", parents=[common], help="ledger records, newest first (default: last 24 h)"
    )
    _request_filters(search)
    _listing(search)
    search.set_defaults(func=search_requests)

    events = verbs.add_parser("events", parents=[common], help="admin events, newest first")
    _event_filters(events)
    _listing(events)
    events.set_defaults(func=search_events)

    show = verbs.add_parser(
        "show", parents=[common], help="one request: its ledger record and its key's events"
    )
    show.add_argument("trace_id", metavar="TRACE_ID")
    _range(show)
    add_json(show)
    show.set_defaults(func=show_request)

    content = verbs.add_parser(
        "content",
        parents=[common],
        help="one request's retained content, decrypted (auditor or admin; the read is audited)",
    )
    content.add_argument("trace_id", metavar="TRACE_ID")
    add_json(content)
    content.set_defaults(func=show_content)

    export = verbs.add_parser(
        "export", parents=[common], help="ledger records (or --events) as JSON Lines, oldest first"
    )
    export.add_argument("--out", required=True, metavar="FILE", help="the file ('-': stdout)")
    export.add_argument("--events", action="store_true", help="admin events, not ledger records")
    _request_filters(export)
    for name in _EVENT_FILTERS:
        export.add_argument(f"--{name.replace('_', '-')}", help="with --events: only this")
    export.set_defaults(func=export_records)


def _range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=_when, help=f"from: {_WHEN_HELP}")
    parser.add_argument("--until", type=_when, help=f"to, exclusive: {_WHEN_HELP}")


def _request_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace-id", help="a trace id (x-request-id)")
    parser.add_argument("--key", help="a key id")
    parser.add_argument("--user", help="a user name")
    parser.add_argument("--project", help="a project name")
    parser.add_argument("--status", help="a code (429), a class (4xx), or error (>= 400)")
    _range(parser)


def _event_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", help="e.g. token:adm_..., local:uid=0, system:retention")
    parser.add_argument("--action", help="e.g. create, revoke, ledger.retention")
    parser.add_argument("--object-type", help="department, project, key, ledger, ...")
    parser.add_argument("--object-id", help="the object's name or id")
    _range(parser)


def _listing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit", type=int, default=100, help="rows, following pages (default 100; 0: all)"
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON array for scripts")
    out.add_argument("--jsonl", action="store_true", help="print JSON Lines, one row a line")


def _when(raw: str) -> str:
    """A time for the API: a duration ago (`2h`) becomes an ISO time, the rest passes as is."""
    try:
        ago = seconds(raw)
    except argparse.ArgumentTypeError:
        return raw  # the admin API checks the time and says what it wants
    when = datetime.now(UTC) - timedelta(seconds=ago)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _query(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(args, n, None) for n in (*names, "since", "until")}


def _pages(ctx: Ctx, path: str, query: dict[str, Any], limit: int) -> Iterator[dict[str, Any]]:
    """Rows of a search, page after page, up to `limit` (0: all)."""
    cursor, left = None, limit or None
    while True:
        size = PAGE if left is None else min(left, PAGE)
        page = ctx.call("GET", path, query={**query, "limit": size, "cursor": cursor})
        yield from page["data"]
        if left is not None:
            left -= len(page["data"])
        cursor = page["next_cursor"]
        if cursor is None or left == 0:
            return


def _emit(ctx: Ctx, rows: Iterator[dict[str, Any]], columns: list[str]) -> None:
    if ctx.args.jsonl:
        for row in rows:
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
    else:
        emit_rows(ctx, list(rows), columns)


# --- commands -------------------------------------------------------------------------------


def show_audit(ctx: Ctx) -> None:
    """aigw audit."""
    a = ctx.args
    query = {"limit": a.limit, "object_type": a.object_type, "actor": a.actor}
    emit_rows(ctx, ctx.call("GET", "/audit", query=query)["data"], AUDIT_COLUMNS)


def verify_chains(ctx: Ctx) -> None:
    """aigw audit verify: exit status 1 when a chain is broken."""
    body = {} if ctx.args.logged_head is None else {"logged_head": ctx.args.logged_head}
    ctx.client.timeout = ctx.args.timeout  # millions of records take a while
    report = ctx.call("POST", "/audit/verify", body)
    if ctx.json:
        print_json(report)
    else:
        for name, label in (("admin", "admin trail"), ("ledger", "ledger")):
            print(f"{label + ':':13}{_chain_line(report[name])}")
        if report["logged_at"]:
            print(f"{'':13}checked against the heads logged at {report['logged_at']}")
    problem = report["problem"]
    if problem is not None:
        raise ApplianceError(
            f"the audit trail does not verify: {problem['table']} record {problem['id']} "
            f"({problem['kind']}): {problem['message']}"
        )


def _chain_line(chain: dict[str, Any]) -> str:
    problem = chain["problem"]
    if problem is not None:
        return f"BROKEN at {problem['table']} id {problem['id']} ({problem['kind']})"
    head = chain["head"]
    line = f"ok, {chain['records']} records, head id={head['id']} hash={head['hash']}"
    start = chain.get("start")
    if start:
        line += f" (after retention anchor id={start['last_id']})"
    if chain.get("unchained"):
        line += f" ({chain['unchained']} from before the chain)"
    return line


def search_requests(ctx: Ctx) -> None:
    """aigw audit search."""
    query = _query(ctx.args, _REQUEST_FILTERS)
    _emit(ctx, _pages(ctx, "/audit/requests", query, ctx.args.limit), REQUEST_COLUMNS)


def search_events(ctx: Ctx) -> None:
    """aigw audit events."""
    query = _query(ctx.args, _EVENT_FILTERS)
    _emit(ctx, _pages(ctx, "/audit/events", query, ctx.args.limit), AUDIT_COLUMNS)


def show_request(ctx: Ctx) -> None:
    """aigw audit show TRACE_ID."""
    a = ctx.args
    # Fully quoted: a client's trace id may hold '/', which must stay in one path segment.
    path = "/audit/requests/" + segment(a.trace_id).replace("/", "%2F")
    found = ctx.call("GET", path, query={"since": a.since, "until": a.until})
    if ctx.json:
        print_json(found)
        return
    for row in found["requests"]:
        emit_object(ctx, row)
        print()
    print(f"admin events on its key, {found['events_since']} to {found['events_until']}:")
    emit_rows(ctx, found["events"], AUDIT_COLUMNS)


def show_content(ctx: Ctx) -> None:
    """aigw audit content TRACE_ID: the record's fields, then its content as indented JSON."""
    path = "/audit/requests/" + segment(ctx.args.trace_id).replace("/", "%2F") + "/content"
    found = ctx.call("GET", path)
    if ctx.json:
        print_json(found)
        return
    emit_object(ctx, {k: v for k, v in found.items() if k != "content"})
    print()
    print_json(found["content"])


def export_records(ctx: Ctx) -> None:
    """aigw audit export --out FILE: JSON Lines, oldest first."""
    a = ctx.args
    if a.events:
        path, query = "/audit/events", _query(a, _EVENT_FILTERS)
        wrong = [n for n in _REQUEST_FILTERS if getattr(a, n) is not None]
    else:
        path, query = "/audit/requests", _query(a, _REQUEST_FILTERS)
        wrong = [n for n in _EVENT_FILTERS if getattr(a, n) is not None]
    if wrong:
        flag = "--" + wrong[0].replace("_", "-")
        raise ApplianceError(f"{flag} {'does not apply to' if a.events else 'needs'} --events")
    rows = _pages(ctx, path, {**query, "order": "asc"}, 0)
    if a.out == "-":
        _write(sys.stdout.buffer, rows)
        sys.stdout.flush()
        return
    target = Path(a.out)
    fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            n = _write(fh, rows)
        os.replace(tmp, target)  # a cut-short export leaves no half file behind
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"{n} {'events' if a.events else 'ledger records'} written to {target}")


def _write(fh: IO[bytes], rows: Iterator[dict[str, Any]]) -> int:
    n = 0
    for row in rows:
        fh.write(orjson.dumps(row) + b"\n")
        n += 1
    return n
