"""Retention: ledger rows older than `[ledger] retention_days` are dropped, rollups are kept.

Rows older than the cut-off go in chunks of a few thousand ids, each chunk its own short
transaction with a pause after it, so a backlog of millions of rows drains without ever holding
the write lock for long. The chunks run on the event loop through the writer's own connection
(`GroupCommitWriter.run_between_batches`), between two group commits: a thread with a
connection of its own would contend for SQLite's single write lock, and the writer on the loop
would then wait in SQLite's busy handler (sleeps of up to tens of ms each) for as long as a
chunk holds it. On the loop the two simply take turns, and a chunk costs the requests in
flight only its own few milliseconds (`Retention.max_chunk_seconds` records the worst one).

The freed pages are reused by new rows, so with a steady request rate the database file stops
growing once it holds `retention_days` of records (the rollups grow by a few hundred rows an
hour).

Records are hash-chained (`gateway.ledger.chain`), so each pass first anchors what it drops: one
admin audit record (`ledger.retention`, object `ledger` `FIRST-LAST`) holding the id and hash of
the last record to go, from which `aigw audit verify` starts the remaining chain. The chunks
then go newest first, so a pass cut short leaves the range's oldest records still chained from
before it and one gap that ends at the anchor. The newest record is never dropped: it is the
chain's head, and keeps SQLite from handing out its ids again.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta

import sqlite_utils

from appliance.chunked import ChunkedJob
from appliance.writer import GroupCommitWriter
from gateway.ledger.hours import ts_text
from gateway.ledger.ids import boundary_id
from gateway.tenancy.audit import GENESIS, record

log = logging.getLogger(__name__)

CHUNK_ROWS = 2000
PAUSE_SECONDS = 0.05
INTERVAL_SECONDS = 3600.0
FIRST_DELAY_SECONDS = 60.0
ANCHOR_ACTION = "ledger.retention"
ACTOR = "system:retention"


def cutoff(retention_days: int, now: datetime | None = None) -> datetime:
    """The time before which ledger rows are dropped."""
    return (now or datetime.now(UTC)) - timedelta(days=retention_days)


def purge_end(conn: sqlite3.Connection, before: datetime) -> int:
    """The id below which rows go: those older than `before`, never the newest row."""
    newest = conn.execute("SELECT max(id) FROM usage").fetchone()[0]
    return min(boundary_id(conn, before), newest or 1)


def anchor(conn: sqlite3.Connection, end_id: int, before: datetime) -> int | None:
    """Record the ids below `end_id` about to go and the last one's hash (an admin audit
    record, its own transaction); the last id, or None when there is nothing to drop."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        last = conn.execute(
            "SELECT id, hash FROM usage WHERE id < ? ORDER BY id DESC LIMIT 1", (end_id,)
        ).fetchone()
        if last is not None:
            first = conn.execute("SELECT min(id) FROM usage").fetchone()[0]
            after = {
                "first_id": first,
                "last_id": last[0],
                # Records from before the chain have no hash: what follows them starts afresh.
                "last_hash": last[1] or GENESIS,
                "cutoff": ts_text(before),
            }
            record(conn, ACTOR, ANCHOR_ACTION, "ledger", f"{first}-{last[0]}", None, after)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return None if last is None else int(last[0])


def delete_chunk(conn: sqlite3.Connection, end_id: int, chunk: int = CHUNK_ROWS) -> int:
    """Delete the newest rows with id < `end_id`, at most `chunk` ids, in one transaction.

    Call after `anchor` has recorded the range.
    """
    top = conn.execute("SELECT max(id) FROM usage WHERE id < ?", (end_id,)).fetchone()[0]
    if top is None:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        cursor = conn.execute("DELETE FROM usage WHERE id > ? AND id <= ?", (top - chunk, top))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return cursor.rowcount


def prune(
    db: sqlite_utils.Database | sqlite3.Connection, before: datetime, chunk: int = CHUNK_ROWS
) -> int:
    """Drop every ledger row older than `before` (anchored), chunk by chunk, at once; rows
    dropped.

    The synchronous form, for tests and maintenance commands; the gateway runs `Retention`.
    """
    conn = db.conn if isinstance(db, sqlite_utils.Database) else db
    end = purge_end(conn, before)
    if anchor(conn, end, before) is None:
        return 0
    total = 0
    while n := delete_chunk(conn, end, chunk):
        total += n
    return total


class Retention(ChunkedJob):
    """Prunes the ledger now and then on the event loop, a chunk at a time."""

    name = "ledger retention"
    interval = INTERVAL_SECONDS
    first_delay = FIRST_DELAY_SECONDS
    chunk = CHUNK_ROWS
    pause = PAUSE_SECONDS

    def __init__(
        self,
        writer: GroupCommitWriter,
        retention_days: int,
        *,
        interval: float | None = None,
        first_delay: float | None = None,
        chunk: int | None = None,
        pause: float | None = None,
    ) -> None:
        super().__init__(
            writer, interval=interval, first_delay=first_delay, chunk=chunk, pause=pause
        )
        self.retention_days = retention_days

    async def run_once(self, now: datetime | None = None) -> int:
        """One pass: drop everything older than the cut-off, yielding between chunks."""
        before = cutoff(self.retention_days, now)
        end = self.writer.run_between_batches(lambda conn: purge_end(conn, before))
        if self.writer.run_between_batches(lambda conn: anchor(conn, end, before)) is None:
            return 0
        self.pass_deleted = 0
        total = await self.delete_chunks(lambda conn: delete_chunk(conn, end, self.chunk))
        self.deleted += total
        if total:
            log.info("ledger retention: dropped %d records older than %s", total, before)
        return total


def start_retention(
    writer: GroupCommitWriter,
    retention_days: int,
    *,
    interval: float = INTERVAL_SECONDS,
    first_delay: float = FIRST_DELAY_SECONDS,
) -> Retention:
    """Start pruning the ledger in the background; `await retention.stop()` before closing."""
    retention = Retention(writer, retention_days, interval=interval, first_delay=first_delay)
    retention.start()
    return retention
