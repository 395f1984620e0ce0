"""Retention drops only old records, chunk by chunk, and keeps the rollups."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlite_utils

from appliance.store import open_store
from appliance.writer import GroupCommitWriter
from gateway.ledger.ids import boundary_id
from gateway.ledger.retention import Retention, delete_chunk, prune
from gateway.ledger.rollups import rollup_hook
from gateway.state import _USAGE_SQL
from tests.gateway.ledger.conftest import ledger_row, write

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = 86400.0


def _fill(db: sqlite_utils.Database, days: int, per_day: int) -> None:
    start = NOW.timestamp() - days * DAY
    write(db.conn, [ledger_row(start + i * DAY / per_day) for i in range(days * per_day)])


def _rollup_totals(db: sqlite_utils.Database) -> tuple[int, int]:
    return db.execute("SELECT sum(requests), sum(cost_micros) FROM rollups").fetchone()


def test_prune_drops_only_rows_older_than_the_cutoff_and_keeps_rollups(
    db: sqlite_utils.Database,
) -> None:
    _fill(db, days=10, per_day=100)
    before = _rollup_totals(db)
    cutoff = NOW - timedelta(days=4)
    assert prune(db, cutoff, chunk=37) == 600
    oldest = db.execute("SELECT min(ts) FROM usage").fetchone()[0]
    assert oldest >= "2026-05-28T00:00:00.000Z"
    assert db.execute("SELECT count(*) FROM usage").fetchone()[0] == 400
    assert _rollup_totals(db) == before
    assert prune(db, cutoff) == 0


def test_each_chunk_is_its_own_small_transaction(db: sqlite_utils.Database) -> None:
    _fill(db, days=2, per_day=50)
    end = boundary_id(db.conn, NOW - timedelta(days=1))
    sizes = []
    while n := delete_chunk(db.conn, end, chunk=15):
        assert not db.conn.in_transaction
        sizes.append(n)
    assert sizes == [15, 15, 15, 5]


def test_boundary_id_skips_gaps_and_handles_edges(db: sqlite_utils.Database) -> None:
    assert boundary_id(db.conn, NOW) == 1  # empty ledger
    _fill(db, days=1, per_day=24)  # ids 1..24, one an hour
    db.execute("DELETE FROM usage WHERE id BETWEEN 5 AND 12")
    start = NOW - timedelta(days=1)
    assert boundary_id(db.conn, start) == 1
    assert boundary_id(db.conn, start + timedelta(hours=6)) == 5  # 5..12 are gone: 13 is next
    assert db.execute("SELECT min(id) FROM usage WHERE id >= 5").fetchone()[0] == 13
    assert boundary_id(db.conn, start + timedelta(hours=12, minutes=1)) == 14
    assert boundary_id(db.conn, NOW) == 25


async def test_the_background_task_yields_between_chunks_beside_the_writer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "aigw.db"
    db = open_store(path)
    _fill(db, days=5, per_day=2000)
    writer = GroupCommitWriter(path, on_batch=rollup_hook(_USAGE_SQL))
    writer.start(asyncio.get_running_loop())
    retention = Retention(writer, retention_days=2, chunk=1000, pause=0.001, first_delay=0)

    async def traffic() -> int:
        done = 0
        while not task.done():
            done += await writer.insert(_USAGE_SQL, ledger_row(NOW.timestamp()))
        return done

    task = asyncio.create_task(retention.run_once(now=NOW))
    written = await traffic()
    assert await task == 6000
    assert written > 0  # requests kept being committed between the chunks
    assert retention.max_chunk_seconds < 0.5
    assert db.execute("SELECT count(*) FROM usage").fetchone()[0] == 4000 + written
    assert db.execute("SELECT sum(requests) FROM rollups").fetchone()[0] == 10_000 + written
    retention.start()  # and the periodic task stops cleanly
    await retention.stop()
    writer.close()
    db.conn.close()
