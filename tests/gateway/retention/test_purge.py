"""Purge: records go once their `purge_after` has passed, in chunks, audited once per pass."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlite_utils

from appliance.store import open_store
from appliance.writer import GroupCommitWriter
from gateway.ledger.hours import ts_text
from gateway.retention.purge import ACTION, ACTOR, ContentPurge, delete_chunk, purge

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _fill(db: sqlite_utils.Database, due: list[datetime]) -> None:
    db.conn.executemany(
        "INSERT INTO contents (trace_id, ts, project, kind, body, purge_after) "
        "VALUES (?, ?, 'p', 'metadata', x'7b7d', ?)",
        [(f"t{i}", ts_text(d - timedelta(days=1)), ts_text(d)) for i, d in enumerate(due)],
    )


def _left(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT count(*) FROM contents").fetchone()[0])


def _purges(db: sqlite_utils.Database) -> list[dict[str, object]]:
    return list(db.query("SELECT * FROM audit WHERE action = ? ORDER BY id", [ACTION]))


def test_only_due_records_go_and_each_pass_is_audited_once(tmp_path: Path) -> None:
    db = open_store(tmp_path / "aigw.db")
    _fill(db, [NOW - timedelta(hours=h) for h in range(1, 8)] + [NOW + timedelta(hours=1)] * 3)
    assert purge(db, NOW, chunk=3) == 7
    assert _left(db) == 3
    [audit] = _purges(db)
    assert audit["actor"] == ACTOR and audit["object_id"] == ts_text(NOW)
    assert audit["after"] == f'{{"deleted":7,"until":"{ts_text(NOW)}"}}'
    assert purge(db, NOW) == 0 and len(_purges(db)) == 1  # nothing due: no record
    assert purge(db, NOW + timedelta(hours=2)) == 3 and _left(db) == 0


def test_each_chunk_is_its_own_small_transaction(tmp_path: Path) -> None:
    db = open_store(tmp_path / "aigw.db")
    _fill(db, [NOW - timedelta(minutes=m) for m in range(1, 11)])
    sizes = []
    while n := delete_chunk(db.conn, ts_text(NOW), chunk=4):
        assert not db.conn.in_transaction
        sizes.append(n)
    assert sizes == [4, 4, 2]


async def test_the_background_pass_runs_on_the_writer_between_batches(tmp_path: Path) -> None:
    path = tmp_path / "aigw.db"
    db = open_store(path)
    _fill(db, [NOW - timedelta(seconds=s) for s in range(1, 51)] + [NOW + timedelta(days=1)])
    writer = GroupCommitWriter(path)
    writer.start(asyncio.get_running_loop())
    job = ContentPurge(writer, chunk=7, pause=0, first_delay=3600)
    try:
        assert await job.run_once(NOW) == 50
        assert job.deleted == 50 and job.max_chunk_seconds > 0
    finally:
        writer.close()
    assert _left(db) == 1 and len(_purges(db)) == 1
