"""Outcomes: business value attached to a trace id or a tag, for the ROI report.

Finance (or an application, through an admin token) records what a request or a scenario was
worth; `reports.roi_report` sets it against what it cost. Outcomes are kept when retention
drops the ledger rows they point at, and every one is audited like any other change.
"""

from __future__ import annotations

import re
from typing import Any

import sqlite_utils

from appliance.store import transaction, utcnow
from gateway.errors import InvalidRequest
from gateway.tenancy.audit import record

MAX_VALUE = 10**15  # a billion units of the currency, in micros: far above any one outcome
MAX_NOTE = 1000
_TAG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")  # as gateway.auth checks request tags
_TRACE = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII: W3C trace ids, x-request-id
_LINE = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")


def _check(
    trace_id: str | None, tag: str | None, business_line: Any, value_micros: Any, note: Any
) -> None:
    if (trace_id is None) == (tag is None):
        raise InvalidRequest("give exactly one of 'trace_id' and 'tag'", param="trace_id")
    if trace_id is not None and not (isinstance(trace_id, str) and _TRACE.match(trace_id)):
        raise InvalidRequest(
            "'trace_id' must be 1-128 printable characters without spaces", param="trace_id"
        )
    if tag is not None and not (isinstance(tag, str) and _TAG.match(tag)):
        raise InvalidRequest(
            "'tag' must be 1-64 lower-case letters, digits and _ . -, starting with a letter "
            "or digit",
            param="tag",
        )
    if not (isinstance(business_line, str) and _LINE.match(business_line.strip())):
        raise InvalidRequest(
            "'business_line' must be 1-100 characters without control characters",
            param="business_line",
        )
    if (
        not isinstance(value_micros, int)
        or isinstance(value_micros, bool)
        or not 0 <= value_micros <= MAX_VALUE
    ):
        raise InvalidRequest(
            f"'value_micros' must be an integer 0-{MAX_VALUE} (micro-units of the box currency)",
            param="value_micros",
        )
    if not isinstance(note, str) or len(note) > MAX_NOTE or "\x00" in note:
        raise InvalidRequest(f"'note' must be at most {MAX_NOTE} characters", param="note")


def add_outcome(
    db: sqlite_utils.Database,
    actor: str,
    *,
    trace_id: str | None = None,
    tag: str | None = None,
    business_line: str,
    value_micros: int,
    note: str = "",
) -> dict[str, Any]:
    """Record one outcome (validated, audited in the same transaction); the stored row."""
    _check(trace_id, tag, business_line, value_micros, note)
    row = {
        "ts": utcnow(),
        "trace_id": trace_id,
        "tag": tag,
        "business_line": business_line.strip(),
        "value_micros": value_micros,
        "note": note,
    }
    with transaction(db):
        cursor = db.execute(
            "INSERT INTO outcomes (ts, trace_id, tag, business_line, value_micros, note) "
            "VALUES (:ts, :trace_id, :tag, :business_line, :value_micros, :note)",
            row,
        )
        row = {"id": int(cursor.lastrowid or 0), **row}
        record(db, actor, "create", "outcome", str(row["id"]), None, row)
    return row


def list_outcomes(
    db: sqlite_utils.Database,
    *,
    since: str | None = None,
    until: str | None = None,
    business_line: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Outcomes, newest first; `since`/`until` are ledger timestamps (`hours.ts_text`)."""
    where, args = [], []
    for sql, value in (
        ("ts >= ?", since),
        ("ts < ?", until),
        ("business_line = ?", business_line),
    ):
        if value is not None:
            where.append(sql)
            args.append(value)
    clause = " WHERE " + " AND ".join(where) if where else ""
    return list(
        db.query(
            f"SELECT id, ts, trace_id, tag, business_line, value_micros, note FROM outcomes"
            f"{clause} ORDER BY id DESC LIMIT ?",
            [*args, limit],
        )
    )
