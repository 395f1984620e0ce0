"""The ledger's hash chain: written by the real group-commit writer, checked by `verify_ledger`,
and tampered with on a real SQLite file (edit, delete, reorder, truncate, rewrite)."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import pytest

from appliance.store import open_store
from appliance.writer import GroupCommitWriter
from gateway.audit.heads import current_heads, store_heads, stored_heads
from gateway.audit.verify import verify, verify_ledger
from gateway.ledger.chain import LedgerChain, digest, table_layout
from gateway.ledger.retention import anchor, delete_chunk, prune, purge_end
from gateway.ledger.rollups import rollup_hook
from gateway.state import _USAGE_SQL
from gateway.tenancy.audit import GENESIS
from tests.gateway.ledger.conftest import ledger_row, write
from tests.harness import Stack

T0 = 1_780_000_000.0  # 2026-05-28
DAY = 86400.0


async def insert(
    path: Path, rows: Sequence[tuple[Any, ...]], *, batch_max: int = 16, on_batch: Any = None
) -> list[bool]:
    """Queue `rows` through a fresh GroupCommitWriter with the chain, as the gateway does."""
    chain = LedgerChain(_USAGE_SQL)
    writer = GroupCommitWriter(
        path,
        batch_max=batch_max,
        on_batch=on_batch or rollup_hook(chain.sql),
        before_insert=chain.before_insert,
    )
    writer.start(asyncio.get_running_loop())
    try:
        return list(await asyncio.gather(*(writer.insert(_USAGE_SQL, r) for r in rows)))
    finally:
        writer.close()


def varied(n: int, start: float = T0, step: float = 60.0) -> list[tuple[Any, ...]]:
    """Rows with the gateway's placeholders ('' and -1), NULLs, ints for REALs, odd times."""
    rng = random.Random(n)
    return [
        ledger_row(
            start + i * step + rng.random(),
            trace_id=f"t-{i}",
            status=rng.choice([200, 200, 429, 500]),
            user=rng.choice(["", None, "bob"]),
            error=rng.choice(["", "upstream_error"]),
            ttft_ms=rng.choice([-1, 12.25, None]),
            latency_ms=rng.choice([7, 12.5]),
            tags=rng.choice(["", "a,b", None]),
            key_id=f"key-{i % 3}",
            saved_micros=rng.choice([0, 0, 15]),
        )
        for i in range(n)
    ]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "aigw.db"
    open_store(p).conn.close()
    return p


@pytest.fixture
async def chained(path: Path) -> sqlite3.Connection:
    """50 varied rows written in several batches; a connection to tamper with."""
    assert all(await insert(path, varied(50)))
    return sqlite3.connect(path, isolation_level=None)


def _check(conn: sqlite3.Connection) -> tuple[str, int, str] | None:
    heads = stored_heads(conn)
    report = verify_ledger(conn, logged=heads.ledger if heads else None)
    p = report.problem
    return None if p is None else (p.table, p.id, p.kind)


def _rehash(conn: sqlite3.Connection) -> None:
    """What a forger with the code does after editing: recompute every hash from GENESIS."""
    layout = table_layout(conn)
    prev = GENESIS
    rows = conn.execute(f"SELECT id, {', '.join(layout.columns)} FROM usage ORDER BY id")
    for row in rows.fetchall():
        prev = digest(prev, row[1:], layout.defaults)
        conn.execute("UPDATE usage SET hash = ? WHERE id = ?", (prev, row[0]))


# --- the chain as written -------------------------------------------------------------------


async def test_rows_through_the_writer_verify_and_store_what_sqlite_would(path: Path) -> None:
    rows = varied(50)
    assert all(await insert(path, rows))
    conn = sqlite3.connect(path)
    report = verify_ledger(conn)
    assert report.problem is None and report.records == 50 and report.head.id == 50
    stored = conn.execute("SELECT ts, user, ttft_ms, latency_ms, tags FROM usage ORDER BY id")
    for params, (ts, user, ttft, latency, tags) in zip(rows, stored, strict=True):
        # The timestamp SQLite's strftime(..., 'unixepoch') makes, to the millisecond.
        expected_ts = conn.execute(
            "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?, 'unixepoch')", (params[1],)
        ).fetchone()[0]
        assert ts == expected_ts
        assert user in ("bob", None) and tags in ("a,b", None)
        assert ttft in (12.25, None) and isinstance(latency, float)
    # The rollups saw the same rows.
    assert conn.execute("SELECT sum(requests) FROM rollups").fetchone()[0] == 50


async def test_a_failed_batch_does_not_move_the_head(path: Path) -> None:
    calls = [0]
    inner = rollup_hook(LedgerChain(_USAGE_SQL).sql)

    def flaky(conn: sqlite3.Connection, by_sql: dict[str, list[tuple[Any, ...]]]) -> None:
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("the second batch fails")
        inner(conn, by_sql)

    results = await insert(path, varied(40), batch_max=10, on_batch=flaky)
    assert results == [True] * 10 + [False] * 10 + [True] * 20
    conn = sqlite3.connect(path)
    report = verify_ledger(conn)
    assert report.problem is None and report.records == 30


async def test_a_restart_reads_the_head_and_older_unchained_rows_come_first(path: Path) -> None:
    db = open_store(path)
    write(db.conn, [ledger_row(T0 - 10), ledger_row(T0 - 5)])  # from before the chain
    db.conn.close()
    assert all(await insert(path, varied(5)))
    assert all(await insert(path, varied(5, start=T0 + 3600)))  # a new writer: the head is read
    report = verify_ledger(sqlite3.connect(path))
    assert report.problem is None and report.records == 10 and report.unchained == 2


def test_statements_the_chain_cannot_predict_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot predict"):
        LedgerChain(_USAGE_SQL.replace("NULLIF(?, -1)", "abs(?)"))
    with pytest.raises(ValueError, match="INSERT INTO usage"):
        LedgerChain("INSERT INTO other (a) VALUES (?)")


# --- tampering ------------------------------------------------------------------------------


async def test_an_edited_field_or_hash_is_named(chained: sqlite3.Connection) -> None:
    assert _check(chained) is None
    chained.execute("UPDATE usage SET cost_micros = 1 WHERE id = 20")
    assert _check(chained) == ("usage", 20, "edited")
    chained.execute("UPDATE usage SET cost_micros = 100 WHERE id = 20")
    assert _check(chained) is None
    chained.execute("UPDATE usage SET hash = NULL WHERE id = 7")
    assert _check(chained) == ("usage", 7, "edited")


async def test_a_deleted_row_is_named(chained: sqlite3.Connection) -> None:
    chained.execute("DELETE FROM usage WHERE id IN (20, 21)")
    report = verify_ledger(chained)
    assert report.problem is not None
    assert (report.problem.id, report.problem.kind) == (22, "deleted")
    assert "records 20..21 are missing" in report.problem.message


async def test_deleted_first_rows_are_named(chained: sqlite3.Connection) -> None:
    chained.execute("DELETE FROM usage WHERE id <= 3")
    assert _check(chained) == ("usage", 4, "deleted")


async def test_swapped_rows_are_named_as_reordered(chained: sqlite3.Connection) -> None:
    a, b = (chained.execute("SELECT * FROM usage WHERE id = ?", (i,)).fetchone() for i in (20, 30))
    names = [d[1] for d in chained.execute("PRAGMA table_info(usage)")][1:]
    sets = ", ".join(f'"{n}" = ?' for n in names)
    chained.execute(f"UPDATE usage SET {sets} WHERE id = 20", b[1:])
    chained.execute(f"UPDATE usage SET {sets} WHERE id = 30", a[1:])
    report = verify_ledger(chained)
    assert report.problem is not None
    assert (report.problem.id, report.problem.kind) == (20, "reordered")
    assert "at id 30" in report.problem.message


async def test_a_truncated_tail_is_caught_by_the_logged_head(chained: sqlite3.Connection) -> None:
    store_heads(chained, current_heads(chained))
    chained.execute("DELETE FROM usage WHERE id > 45")
    assert verify_ledger(chained).problem is None  # the chain alone cannot tell
    assert _check(chained) == ("usage", 46, "truncated")


async def test_a_consistently_rewritten_table_is_caught_by_the_logged_head(
    chained: sqlite3.Connection,
) -> None:
    store_heads(chained, current_heads(chained))
    chained.execute("UPDATE usage SET cost_micros = 0 WHERE id = 3")
    _rehash(chained)
    assert verify_ledger(chained).problem is None  # a consistent fresh chain
    assert _check(chained) == ("usage", 50, "rewritten")


# --- retention ------------------------------------------------------------------------------


async def test_retention_anchors_keep_the_chain_verifiable(path: Path) -> None:
    assert all(await insert(path, varied(100, step=DAY / 10)))  # 10 days, 10 a day
    conn = sqlite3.connect(path, isolation_level=None)
    cut = datetime.fromtimestamp(T0 + 4 * DAY, UTC)
    assert prune(conn, cut, chunk=7) == 40
    report = verify(conn)
    assert report.problem is None
    assert report.ledger.start is not None and report.ledger.start.last_id == 40
    assert report.ledger.records == 60
    # A pass cut short: anchored, then only its newest chunk dropped.
    cut = datetime.fromtimestamp(T0 + 8 * DAY, UTC)
    end = purge_end(conn, cut)
    assert anchor(conn, end, cut) == 80
    assert delete_chunk(conn, end, chunk=5) == 5  # ids 76..80 gone, 41..75 still there
    assert verify(conn).problem is None
    # Rows dropped without an anchor are not retention's.
    conn.execute("DELETE FROM usage WHERE id BETWEEN 50 AND 52")
    problem = verify(conn).problem
    assert problem is not None and (problem.id, problem.kind) == (53, "deleted")


async def test_retention_never_drops_the_newest_row(path: Path) -> None:
    assert all(await insert(path, varied(20)))
    conn = sqlite3.connect(path, isolation_level=None)
    assert prune(conn, datetime.fromtimestamp(T0 + 100 * DAY, UTC)) == 19
    assert conn.execute("SELECT id FROM usage").fetchall() == [(20,)]
    assert verify(conn).problem is None
    # New rows chain on from it, and verify from the anchor.
    assert all(await insert(path, varied(3, start=T0 + DAY)))
    report = verify(conn)
    assert report.problem is None and report.ledger.records == 4


def test_requests_through_the_gateway_are_chained(stack: Stack, oai: openai.OpenAI) -> None:
    conn = sqlite3.connect(stack.cfg.database_path)
    layout = table_layout(conn)
    last = conn.execute("SELECT max(id) FROM usage").fetchone()[0] or 0
    user = [{"role": "user", "content": "hi"}]
    oai.chat.completions.create(model="oa", messages=user)
    list(oai.chat.completions.create(model="an", messages=user, stream=True))
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="missing", messages=user)
    rows = conn.execute(
        f"SELECT id, {', '.join(layout.columns)}, hash FROM usage WHERE id >= ? ORDER BY id",
        (last,),
    ).fetchall()
    prev = rows[0][-1] if last else GENESIS
    new = rows[1:] if last else rows
    assert len(new) == 3 and all(r[-1] for r in new)
    for row in new:  # each Gateway.finish row links to the one before it
        assert row[-1] == digest(prev, row[1:-1], layout.defaults)
        prev = row[-1]
