"""The SQLite store and the group-commit writer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from appliance.errors import StoreError
from appliance.migrations import SCHEMA_VERSION
from appliance.store import open_store, schema_version
from appliance.writer import GroupCommitWriter


def test_open_migrates_and_uses_wal(tmp_path: Path) -> None:
    db = open_store(tmp_path / "s" / "aigw.db")
    assert schema_version(db.conn) == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"providers", "models", "usage", "settings"} <= set(db.table_names())
    db.conn.close()
    again = open_store(tmp_path / "s" / "aigw.db")  # idempotent
    assert schema_version(again.conn) == SCHEMA_VERSION


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "aigw.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="upgrade aigw"):
        open_store(path)


SQL = "INSERT INTO settings(key, value) VALUES (?, ?)"


async def test_writer_commits_in_batches_before_resolving(tmp_path: Path) -> None:
    path = tmp_path / "aigw.db"
    open_store(path).conn.close()
    writer = GroupCommitWriter(path, batch_max=64)
    writer.start(asyncio.get_running_loop())
    futures = [writer.insert(SQL, (f"k{i}", str(i))) for i in range(500)]
    assert all(await asyncio.gather(*futures))
    assert writer.batches == 8  # 500 rows queued in one loop turn, at most 64 a transaction
    # Resolved means durable: another connection sees every row.
    check = sqlite3.connect(path)
    assert check.execute("SELECT count(*) FROM settings").fetchone()[0] == 500
    writer.close()
    assert writer.committed == 500 and writer.failed == 0


async def test_writer_reports_a_failed_batch(tmp_path: Path) -> None:
    path = tmp_path / "aigw.db"
    open_store(path).conn.close()
    writer = GroupCommitWriter(path)
    writer.start(asyncio.get_running_loop())
    assert await writer.insert(SQL, ("dup", "1")) is True
    assert await writer.insert(SQL, ("dup", "2")) is False
    writer.close()
    assert writer.failed == 1


async def test_close_flushes_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "aigw.db"
    open_store(path).conn.close()
    writer = GroupCommitWriter(path)
    writer.start(asyncio.get_running_loop())
    for i in range(100):
        writer.insert(SQL, (f"q{i}", "x"))
    writer.close()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM settings").fetchone()[0] == 100
