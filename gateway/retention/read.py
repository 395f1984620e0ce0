"""Reading retained content back: the records of a trace id, opened; or why there are none.

The admin API (`GET /admin/v1/audit/requests/{trace_id}/content`) is the only reader; it audits
every read. Nothing here logs.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from appliance.vault import Vault
from gateway.ledger.hours import ts_text
from gateway.retention.purge import ACTION as PURGE_ACTION
from gateway.retention.sealing import ContentUnreadable, cipher_of, unseal
from gateway.retention.settings import FULL, NONE


@dataclass(frozen=True, slots=True)
class Stored:
    """One `contents` row as stored (the body still sealed for 'full')."""

    trace_id: str
    ts: str
    project: str
    kind: str
    sealed_with: str | None
    body: bytes
    purge_after: str


def records(conn: sqlite3.Connection, trace_id: str) -> list[Stored]:
    """The trace id's records, newest first (a client's own trace id may repeat)."""
    rows = conn.execute(
        "SELECT trace_id, ts, project, kind, sealed_with, body, purge_after FROM contents "
        "WHERE trace_id = ? ORDER BY id DESC",
        (trace_id,),
    ).fetchall()
    return [Stored(*row) for row in rows]


def open_record(vault: Vault | None, stored: Stored) -> dict[str, Any]:
    """The record as the API returns it, its content decrypted; KeyUnavailable or
    ContentUnreadable when it cannot be opened."""
    body = stored.body
    if stored.kind == FULL:
        if not stored.sealed_with:
            raise ContentUnreadable("a full record without the name of its key")
        aead = cipher_of(vault, stored.sealed_with)
        body = unseal(aead, body, stored.trace_id, stored.project)
    try:
        content = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ContentUnreadable("the record's content is not JSON") from None
    return {
        "trace_id": stored.trace_id,
        "project": stored.project,
        "kind": stored.kind,
        "ts": stored.ts,
        "purge_after": stored.purge_after,
        "content": content,
    }


def why_missing(
    conn: sqlite3.Connection, trace_id: str, now: datetime | None = None
) -> tuple[str, str]:
    """(reason, message) for a trace id with no content record, from its ledger record, its
    project's retention now, and the purge passes on record: 'purged', 'not_kept' or 'unknown'.

    A record is kept at least a day, so it may have been purged only when its period has passed
    or a purge pass ran up to a day or more after the request."""
    row = conn.execute(
        "SELECT u.ts, u.project, p.retention, p.retention_days FROM usage u "
        "LEFT JOIN projects p ON p.name = u.project WHERE u.trace_id = ? "
        "ORDER BY u.id DESC LIMIT 1",
        (trace_id,),
    ).fetchone()
    if row is None:
        return "unknown", (
            f"no content is retained for trace id {trace_id!r}, and no ledger record has it "
            "(never served here, or its ledger record is past the ledger's retention too)"
        )
    ts, project, mode, days = row
    if project is None or mode is None or mode == NONE:
        return "not_kept", (
            f"no content was kept for trace id {trace_id!r}: its project "
            f"{project or '(none)'} retains no content"
        )
    try:
        served = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        served = None
    if served is not None and (
        served + timedelta(days=days) <= (now or datetime.now(UTC))
        or conn.execute(
            "SELECT 1 FROM audit WHERE action = ? AND object_id >= ? LIMIT 1",
            (PURGE_ACTION, ts_text(served + timedelta(days=1))),
        ).fetchone()
    ):
        return "purged", (
            f"the content of trace id {trace_id!r} was purged: its project {project} keeps "
            f"content for {days} days, and the request was served at {ts}"
        )
    return "not_kept", (
        f"no content was kept for trace id {trace_id!r} (project {project} keeps {mode} "
        "content now; the request came before that, failed before it was routed, or its full "
        "content could not be sealed)"
    )
