"""Purge: retained content goes once its `purge_after` has passed.

Like the ledger's retention (`gateway.ledger.retention`), a pass deletes in chunks of a few
thousand rows, each its own short transaction on the writer's connection between two group
commits (`GroupCommitWriter.run_between_batches`), with a pause after each, so a backlog never
holds the write lock for long. Each pass that deletes anything leaves one admin audit record
(`contents.purge` by `system:retention`) with the count and the time it purged up to; a pass cut
short records what it did delete.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime

import sqlite_utils

from appliance.chunked import ChunkedJob
from appliance.writer import GroupCommitWriter
from gateway.ledger.hours import ts_text
from gateway.tenancy.audit import record

log = logging.getLogger(__name__)

CHUNK_ROWS = 2000
PAUSE_SECONDS = 0.05
INTERVAL_SECONDS = 3600.0
FIRST_DELAY_SECONDS = 90.0  # after the ledger's first pass, not with it
ACTOR = "system:retention"
ACTION = "contents.purge"


def delete_chunk(conn: sqlite3.Connection, until: str, chunk: int = CHUNK_ROWS) -> int:
    """Delete at most `chunk` rows whose `purge_after` <= `until`, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        cursor = conn.execute(
            "DELETE FROM contents WHERE id IN "
            "(SELECT id FROM contents WHERE purge_after <= ? ORDER BY purge_after LIMIT ?)",
            (until, chunk),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return cursor.rowcount


def audit_pass(conn: sqlite3.Connection, deleted: int, until: str) -> None:
    """The pass's audit record (its own transaction)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        record(conn, ACTOR, ACTION, "contents", until, None, {"deleted": deleted, "until": until})
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def purge(
    db: sqlite_utils.Database | sqlite3.Connection,
    now: datetime | None = None,
    chunk: int = CHUNK_ROWS,
) -> int:
    """Delete every record due by `now`, chunk by chunk, at once; records deleted.

    The synchronous form, for tests and maintenance; the gateway runs `ContentPurge`.
    """
    conn = db.conn if isinstance(db, sqlite_utils.Database) else db
    until = ts_text(now or datetime.now(UTC))
    total = 0
    while n := delete_chunk(conn, until, chunk):
        total += n
    if total:
        audit_pass(conn, total, until)
    return total


class ContentPurge(ChunkedJob):
    """Purges retained content now and then on the event loop, a chunk at a time."""

    name = "content purge"
    interval = INTERVAL_SECONDS
    first_delay = FIRST_DELAY_SECONDS
    chunk = CHUNK_ROWS
    pause = PAUSE_SECONDS

    async def run_once(self, now: datetime | None = None) -> int:
        """One pass: delete what is due by `now` (default: now), yielding between chunks."""
        until = ts_text(now or datetime.now(UTC))
        self.pass_deleted = 0
        try:
            await self.delete_chunks(lambda conn: delete_chunk(conn, until, self.chunk))
        finally:
            # Also when stopped or failed part way: what went is on record.
            total = self.pass_deleted
            if total:
                self.writer.run_between_batches(lambda conn: audit_pass(conn, total, until))
                self.deleted += total
                log.info("retention: purged %d content records due by %s", total, until)
        return total


def start_purge(
    writer: GroupCommitWriter,
    *,
    interval: float = INTERVAL_SECONDS,
    first_delay: float = FIRST_DELAY_SECONDS,
) -> ContentPurge:
    """Start purging retained content in the background; `await purge.stop()` before closing."""
    job = ContentPurge(writer, interval=interval, first_delay=first_delay)
    job.start()
    return job
