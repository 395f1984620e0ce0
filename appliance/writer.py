"""The group-commit writer: rows from many requests share one SQLite transaction.

Rows are committed on the event loop itself, in one transaction per batch. A batch closes when
every request that may still add a row has added it (nobody else to wait for), when it is full,
or after a short commit window, whichever comes first: under load many requests share one
commit, and a lone request is committed at once. A commit in WAL mode with
`synchronous=NORMAL` is an append to the WAL in the page cache (tens of microseconds for a
batch); handing rows to a writer thread instead cost far more here, in thread wake-ups and GIL
hand-offs on every batch. What may block on the disk
(the checkpoint, which copies the WAL back and fsyncs) runs on a thread of its own.

The future a caller awaits resolves after its row is committed, so a killed process loses no
acknowledged row. It resolves to False when the commit failed (logged), so that accounting
trouble is reported rather than turned into a failed client request.

A `before_insert` hook runs inside each batch's transaction before the inserts and may rewrite
the batch's rows (the ledger's hash chain appends each row's hash there, so the hash is stored
by the row's own INSERT); what it returns runs only once the batch has committed, so state it
keeps (the chain's head) never moves past a rolled-back batch. An `on_batch` hook runs inside
the transaction after the inserts, with the batch's rows grouped by statement: what it writes
(the ledger's hourly rollups) commits or rolls back with the rows themselves, so the two can
never drift apart. Other work that writes the same tables (retention) runs through
`run_between_batches`, on the loop, between two commits.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from appliance.store import connect

log = logging.getLogger(__name__)

# The WAL is copied back when it passes this size, or this long after the last copy: each
# checkpoint costs an fsync and a cache reload, so doing it every second cost more CPU than
# the writes themselves.
CHECKPOINT_BYTES = 8 * 1024 * 1024
CHECKPOINT_SECONDS = 30.0
_POLL_SECONDS = 1.0
_Row = tuple[str, tuple[Any, ...], "asyncio.Future[bool]"]
BatchHook = Callable[[sqlite3.Connection, dict[str, list[tuple[Any, ...]]]], None]
"""Called with the write connection and the batch's parameter tuples keyed by their SQL."""
InsertHook = Callable[
    [sqlite3.Connection, dict[str, list[tuple[Any, ...]]]], Callable[[], None] | None
]
"""Like BatchHook, before the inserts; may rewrite the batch in place. Returns what to run once
the batch has committed (None: nothing)."""
T = TypeVar("T")


class GroupCommitWriter:
    """Batches INSERTs from the event loop into one SQLite transaction per loop turn."""

    def __init__(
        self,
        path: Path,
        batch_max: int = 512,
        window: float = 0.002,
        expected: Callable[[], int] = lambda: 0,
        on_batch: BatchHook | None = None,
        before_insert: InsertHook | None = None,
    ) -> None:
        self._path = path
        self._on_batch = on_batch
        self._before_insert = before_insert
        self._batch_max = batch_max
        self._window = window
        # How many rows may still join the open batch (e.g. requests in flight).
        self._expected = expected
        self._timer: asyncio.Handle | None = None
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Row] = []
        self._checkpointer: _Checkpointer | None = None
        self.committed = 0
        self.failed = 0
        self.batches = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open the write connection and start the checkpoint thread."""
        self._loop = loop
        self._conn = connect(self._path)
        # Checkpoints run on the checkpointer's own connection, never inside a commit here.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._conn.execute(f"PRAGMA journal_size_limit={CHECKPOINT_BYTES}")
        self._checkpointer = _Checkpointer(self._path)
        self._checkpointer.start()

    def insert(self, sql: str, params: tuple[Any, ...]) -> asyncio.Future[bool]:
        """Queue one row; the future resolves (True) once it is committed."""
        assert self._loop is not None, "writer not started"
        fut: asyncio.Future[bool] = self._loop.create_future()
        self._pending.append((sql, params, fut))
        n = len(self._pending)
        if n >= self._batch_max:
            self.flush()
        elif n >= self._expected():
            if self._timer is not None:
                self._timer.cancel()
            # At the end of this loop turn, so rows queued in the same turn share the commit.
            self._timer = self._loop.call_soon(self.flush)
        elif self._timer is None:
            self._timer = self._loop.call_later(self._window, self.flush)
        return fut

    def flush(self) -> None:
        """Commit everything queued in one transaction and resolve its futures."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self._conn is None:  # queued after close: say so rather than leave callers waiting
            log.error("%d rows arrived after the writer closed and were not recorded", len(batch))
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_result(False)
            return
        by_sql: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for sql, params, _ in batch:
            by_sql[sql].append(params)
        ok = True
        on_commit = None
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            if self._before_insert is not None:
                on_commit = self._before_insert(self._conn, by_sql)
            for sql, rows in by_sql.items():
                self._conn.executemany(sql, rows)
            if self._on_batch is not None:
                self._on_batch(self._conn, by_sql)
            self._conn.execute("COMMIT")
            self.committed += len(batch)
            self.batches += 1
        except Exception as exc:
            # A hook's bug fails the batch like a failed insert: rows and rollups stay in step.
            log.error(
                "group commit of %d rows failed: %s",
                len(batch),
                exc,
                exc_info=not isinstance(exc, sqlite3.Error),
            )
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self.failed += len(batch)
            ok = False
        if ok and on_commit is not None:
            on_commit()
        for _, _, fut in batch:
            if not fut.done():
                fut.set_result(ok)

    def run_between_batches(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the write connection now, on the loop: never inside a batch's commit.

        For short maintenance transactions (retention's chunked deletes) that must not fight the
        writer for SQLite's write lock: on the same connection and thread they simply take
        turns, and a queued batch waits at most as long as `fn` runs.
        """
        assert self._conn is not None, "writer not started"
        return fn(self._conn)

    def close(self) -> None:
        """Commit what is queued, checkpoint, and close."""
        self.flush()
        log.info(
            "group commit: %d rows in %d transactions, %d failed",
            self.committed,
            self.batches,
            self.failed,
        )
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Checkpointer(threading.Thread):
    """Copies the WAL back into the database now and then, off the event loop."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="aigw-checkpoint", daemon=True)
        self._path = path
        self._stop_event = threading.Event()

    def run(self) -> None:
        conn = connect(self._path)
        wal = self._path.with_name(self._path.name + "-wal")
        last = time.monotonic()
        try:
            while not self._stop_event.wait(_POLL_SECONDS):
                try:
                    size = wal.stat().st_size
                except OSError:
                    size = 0
                if size > CHECKPOINT_BYTES or time.monotonic() - last > CHECKPOINT_SECONDS:
                    # PASSIVE never blocks the writer on the event loop; the writer resets the
                    # WAL after a complete checkpoint and journal_size_limit trims the file.
                    self._checkpoint(conn, "PASSIVE")
                    last = time.monotonic()
            self._checkpoint(conn, "TRUNCATE")
        finally:
            conn.close()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection, mode: str) -> None:
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})")
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)

    def stop(self) -> None:
        """Final checkpoint, then end the thread."""
        self._stop_event.set()
        self.join(10)
