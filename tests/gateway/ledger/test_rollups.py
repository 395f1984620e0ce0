"""Rollups stay equal to a GROUP BY over the ledger, whatever the batches (hypothesis)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from appliance.store import open_store
from appliance.writer import GroupCommitWriter
from gateway.ledger.rollups import ledger_columns, rebuild_rollups, rollup_hook
from gateway.state import _USAGE_SQL
from tests.gateway.ledger.conftest import ledger_row, write

BASE = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DIMS = st.sampled_from([None, "a", "b"])
ROW = st.builds(
    lambda hour, offset, dep, proj, user, key, prov, model, status, tags, n: ledger_row(
        BASE + hour * 3600 + offset,
        department=dep,
        project=proj,
        user=user,
        key_id=key,
        provider=prov,
        model=model,
        status=status,
        tags=",".join(tags) or None,
        input_tokens=n,
        output_tokens=2 * n,
        cached_tokens=n // 3,
        cost_micros=7 * n,
    ),
    hour=st.integers(0, 3),
    # includes the last half millisecond of an hour, which SQLite's ts rounds up to the next
    offset=st.sampled_from([0.0, 0.0004, 1799.5, 3599.9996, 3599.999]),
    dep=DIMS,
    proj=DIMS,
    user=DIMS,
    key=DIMS,
    prov=DIMS,
    model=st.sampled_from(["m1", "m2", "-"]),
    status=st.sampled_from([200, 201, 400, 429, 499, 500]),
    tags=st.lists(st.sampled_from(["support", "summarize", "x.y"]), max_size=3, unique=True),
    n=st.integers(0, 10_000),
)

_EXPECTED = """
SELECT substr(ts, 1, 13) || ':00:00Z', coalesce(department, ''), coalesce(project, ''),
       coalesce(user, ''), coalesce(key_id, ''), coalesce(provider, ''), model,
       count(*), sum(status >= 400), sum(input_tokens), sum(output_tokens), sum(cached_tokens),
       sum(cost_micros)
FROM usage GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7
"""
_ACTUAL = "SELECT * FROM rollups ORDER BY 1, 2, 3, 4, 5, 6, 7"


def _expected_tags(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    sums: dict[tuple[str, ...], list[int]] = {}
    rows = conn.execute(
        "SELECT substr(ts, 1, 13) || ':00:00Z', tags, coalesce(department, ''), "
        "coalesce(project, ''), input_tokens, output_tokens, cost_micros FROM usage"
    )
    for hour, tags, dep, proj, tin, tout, cost in rows:
        for tag in (tags or "").split(","):
            if tag:
                acc = sums.setdefault((hour, tag, dep, proj), [0, 0, 0, 0])
                for i, v in enumerate((1, tin, tout, cost)):
                    acc[i] += v
    return sorted((*k, *v) for k, v in sums.items())


def _check(conn: sqlite3.Connection) -> None:
    assert conn.execute(_ACTUAL).fetchall() == conn.execute(_EXPECTED).fetchall()
    tags = conn.execute("SELECT * FROM rollup_tags ORDER BY 1, 2, 3, 4").fetchall()
    assert tags == _expected_tags(conn)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(ROW, min_size=1, max_size=30), min_size=1, max_size=6))
@example(batches=[[ledger_row(BASE + 3599.9996, status=500, tags="a,b", user=None)]])
def test_rollups_equal_a_group_by_over_the_ledger(
    db: sqlite_utils.Database, batches: list[list[tuple[Any, ...]]]
) -> None:
    conn = db.conn
    conn.execute("DELETE FROM usage")
    conn.execute("DELETE FROM rollups")
    conn.execute("DELETE FROM rollup_tags")
    for batch in batches:
        write(conn, batch)
    _check(conn)
    # and a rebuild from the ledger gives the same sums
    conn.execute("BEGIN")
    rebuild_rollups(conn)
    conn.execute("COMMIT")
    _check(conn)


def test_errors_and_missing_dimensions(db: sqlite_utils.Database) -> None:
    write(
        db.conn,
        [
            ledger_row(BASE, status=401, key_id=None, project=None, department=None, provider=None),
            ledger_row(BASE + 1, status=200, key_id=None, project=None, department=None),
            ledger_row(BASE + 2, status=503, tags="support"),
        ],
    )
    rows = list(db.query("SELECT * FROM rollups ORDER BY department"))
    assert [
        (r["department"], r["key_id"], r["provider"], r["requests"], r["errors"]) for r in rows
    ] == [
        ("", "", "", 1, 1),
        ("", "", "openai", 1, 0),
        ("eng", "key-a", "openai", 1, 1),
    ]
    assert rows[0]["hour"] == "2026-01-01T00:00:00Z"
    (tag,) = db.query("SELECT * FROM rollup_tags")
    assert tag == {
        "hour": "2026-01-01T00:00:00Z",
        "tag": "support",
        "department": "eng",
        "project": "web",
        "requests": 1,
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_micros": 100,
    }


def test_the_hook_reads_columns_by_name_and_refuses_a_statement_it_cannot() -> None:
    assert ledger_columns(_USAGE_SQL)[:2] == ["trace_id", "ts"]
    with pytest.raises(ValueError, match="one parameter per column"):
        rollup_hook("INSERT INTO usage (ts, model) VALUES (?, ?, ?)")
    with pytest.raises(ValueError, match="lacks column"):
        rollup_hook("INSERT INTO usage (ts, model) VALUES (?, ?)")


async def test_the_writer_commits_rows_and_rollups_together(tmp_path: Path) -> None:
    path = tmp_path / "aigw.db"
    db = open_store(path)
    writer = GroupCommitWriter(path, on_batch=rollup_hook(_USAGE_SQL))
    writer.start(asyncio.get_running_loop())
    futures = [writer.insert(_USAGE_SQL, ledger_row(BASE + i, cost_micros=i)) for i in range(50)]
    assert all(await asyncio.gather(*futures))
    (requests, cost), *_ = db.execute("SELECT sum(requests), sum(cost_micros) FROM rollups")
    assert (requests, cost) == (50, sum(range(50)))

    def broken(conn: sqlite3.Connection, by_sql: dict[str, list[tuple[Any, ...]]]) -> None:
        raise RuntimeError("a bug in a hook")

    writer.close()
    failing = GroupCommitWriter(path, on_batch=broken)
    failing.start(asyncio.get_running_loop())
    assert await failing.insert(_USAGE_SQL, ledger_row(BASE + 99)) is False
    assert db.execute("SELECT count(*) FROM usage").fetchone()[0] == 50
    assert failing.failed == 1
    failing.close()
    db.conn.close()
