"""The group-commit writer: one thread owns the write connection and commits in batches.

Request handlers on the event loop hand it rows and may await the commit; many rows share one
transaction, so the commit cost is paid per batch, not per request. The future a caller awaits
resolves only after the row is durable (committed in WAL), so a killed process loses no
acknowledged row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from appliance.store import connect

log = logging.getLogger(__name__)

_STOP = object()


class GroupCommitWriter:
    """Batches INSERTs from the event loop into few SQLite transactions on a writer thread."""

    def __init__(self, path: Path, batch_max: int = 512) -> None:
        self._path = path
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.committed = 0
        self.failed = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the writer thread; futures resolve on `loop`."""
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="aigw-writer", daemon=True)
        self._thread.start()

    def insert(self, sql: str, params: tuple[Any, ...]) -> asyncio.Future[None]:
        """Queue one row; the returned future resolves once it is committed."""
        assert self._loop is not None, "writer not started"
        fut: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((sql, params, fut))
        return fut

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        conn = connect(self._path)
        try:
            while True:
                first = self._queue.get()
                stop = first is _STOP
                batch = [] if stop else [first]
                while len(batch) < self._batch_max:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        continue
                    batch.append(item)
                if batch:
                    self._commit(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        by_sql: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for sql, params, _ in batch:
            by_sql[sql].append(params)
        error: BaseException | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for sql, rows in by_sql.items():
                conn.executemany(sql, rows)
            conn.execute("COMMIT")
            self.committed += len(batch)
        except sqlite3.Error as exc:
            log.error("usage writer: commit of %d rows failed: %s", len(batch), exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.failed += len(batch)
            error = exc
        futures = [fut for _, _, fut in batch]
        assert self._loop is not None
        # A closed loop means nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_resolve, futures, error)


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in futures:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)
