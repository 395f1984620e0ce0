"""The chains' heads: written to the system log every few minutes, and kept for `verify`.

A head is a chain's newest record: its id and hash. Logging both heads (logger `aigw.audit`, at
INFO) puts a copy outside the database, so records later deleted from the end of a chain, or a
whole chain rewritten consistently, no longer match a head logged before. The last logged heads
are also kept in `settings` (`audit.heads`), so that `aigw audit verify` catches both without
the log; an auditor who distrusts the database passes the line from the log instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

import orjson

from appliance.store import utcnow
from appliance.writer import GroupCommitWriter
from gateway.tenancy.audit import GENESIS

log = logging.getLogger("aigw.audit")

SETTINGS_KEY = "audit.heads"
CHAINS = ("admin", "ledger")
_TABLES = {"admin": "audit", "ledger": "usage"}
_LINE = re.compile(r"\b(admin|ledger) id=(\d+) hash=([0-9a-f]{64}|-)")


@dataclass(frozen=True, slots=True)
class Head:
    """A chain's newest record: its id (0: none yet) and hash (None: from before the chain)."""

    id: int
    hash: str | None

    def text(self) -> str:
        """`id=… hash=…`, as the log line has it."""
        return f"id={self.id} hash={self.hash or '-'}"


@dataclass(frozen=True, slots=True)
class Heads:
    """Both chains' heads, and when they were taken."""

    admin: Head
    ledger: Head
    ts: str = ""

    def line(self) -> str:
        """The system log line."""
        return f"audit head: admin {self.admin.text()}; ledger {self.ledger.text()}"

    def to_json(self) -> dict[str, Any]:
        """A JSON object (as stored in settings and shown by the admin API)."""
        return {
            "ts": self.ts,
            "admin": {"id": self.admin.id, "hash": self.admin.hash},
            "ledger": {"id": self.ledger.id, "hash": self.ledger.hash},
        }


def current_heads(conn: sqlite3.Connection) -> Heads:
    """Both chains' heads now (an empty chain's head is id 0 with the genesis hash)."""
    heads = {}
    for chain in CHAINS:
        row = conn.execute(
            f"SELECT id, hash FROM {_TABLES[chain]} ORDER BY id DESC LIMIT 1"
        ).fetchone()
        heads[chain] = Head(row[0], row[1]) if row else Head(0, GENESIS)
    return Heads(heads["admin"], heads["ledger"], utcnow())


def stored_heads(conn: sqlite3.Connection) -> Heads | None:
    """The heads last logged, as kept in settings; None before the first."""
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (SETTINGS_KEY,)).fetchone()
    if row is None:
        return None
    data = orjson.loads(row[0])
    admin, ledger = (Head(int(data[c]["id"]), data[c]["hash"]) for c in CHAINS)
    return Heads(admin, ledger, data.get("ts", ""))


def store_heads(conn: sqlite3.Connection, heads: Heads) -> None:
    """Keep `heads` as the last logged ones (in the caller's transaction, if any)."""
    conn.execute(
        "INSERT INTO settings(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (SETTINGS_KEY, orjson.dumps(heads.to_json()).decode()),
    )


def parse_heads(text: str) -> dict[str, Head]:
    """The heads in a logged line (`… admin id=N hash=H; ledger id=N hash=H`), by chain."""
    found = {m[1]: Head(int(m[2]), None if m[3] == "-" else m[3]) for m in _LINE.finditer(text)}
    if not found:
        raise ValueError(
            "expected a logged head such as 'audit head: admin id=12 hash=<64 hex>; "
            "ledger id=3456 hash=<64 hex>'"
        )
    return found


def log_heads(conn: sqlite3.Connection) -> Heads:
    """Read both heads, store them as the last logged ones, and log them."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        heads = current_heads(conn)
        store_heads(conn, heads)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    log.info("%s", heads.line())
    return heads


class HeadLogger:
    """Logs both heads at start, every `interval` seconds, and at shutdown.

    It runs on the event loop with the ledger writer's connection, between two group commits,
    like retention: the heads it reads are committed ones, and it never waits on the writer.
    """

    def __init__(self, writer: GroupCommitWriter, interval: float) -> None:
        self.writer = writer
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Log the heads now and start the periodic task (call after the writer started)."""
        self.log_now()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="aigw-audit-heads")

    async def stop(self) -> None:
        """Stop, commit what the writer holds, and log the final heads (before it closes)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self.writer.flush()
        self.log_now()

    def log_now(self) -> Heads | None:
        """Log and store the heads; None (and a warning) when the database refused."""
        try:
            return self.writer.run_between_batches(log_heads)
        except sqlite3.Error as exc:
            log.warning("could not log the audit heads: %s", exc)
            return None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.log_now()
