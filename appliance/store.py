"""The box's SQLite store: opened through sqlite-utils, WAL mode, migrated at start."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from appliance.errors import StoreError
from appliance.migrations import MIGRATIONS, SCHEMA_VERSION


def utcnow() -> str:
    """Now, UTC, ISO 8601 with milliseconds and a Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the pragmas every user of the store needs."""
    conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across process crashes in WAL mode; only a power loss can drop the tail.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the database."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations, each in its own transaction; returns the new version."""
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the database is at schema version {current} but this aigw knows only up to "
            f"{SCHEMA_VERSION}; upgrade aigw or restore a backup made by this version"
        )
    for number in range(current + 1, SCHEMA_VERSION + 1):
        script = MIGRATIONS[number - 1]
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StoreError(f"migration {number} failed: {exc}") from exc
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    """Split a script into statements (SQLite's own test, so `;` in comments is harmless)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in current.splitlines()
    ):
        raise StoreError(f"incomplete SQL statement in a migration: {current.strip()[:80]}")
    return out


def open_store(path: Path) -> sqlite_utils.Database:
    """Open (creating if needed) and migrate the database at `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = connect(path)
        migrate(conn)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the database {path}: {exc}") from exc
    return sqlite_utils.Database(conn)


def check_writable(db: sqlite_utils.Database) -> bool:
    """True when the database accepts a write transaction right now."""
    try:
        db.conn.execute("BEGIN IMMEDIATE")
        db.conn.execute("ROLLBACK")
    except sqlite3.Error:
        return False
    return True


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """One write transaction (the connection is in autocommit mode otherwise)."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")
