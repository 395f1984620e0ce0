"""A migrated store and ledger rows written the way the gateway writes them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from appliance.store import open_store
from gateway.ledger.rollups import ledger_columns, rollup_hook
from gateway.state import _USAGE_SQL

COLUMNS = ledger_columns(_USAGE_SQL)
HOOK = rollup_hook(_USAGE_SQL)


def ledger_row(ts: float, **fields: Any) -> tuple[Any, ...]:
    """One ledger row's parameters in the gateway's order; unnamed fields get plain values."""
    defaults: dict[str, Any] = {
        "trace_id": f"trace-{ts}",
        "ts": ts,
        "api": "openai",
        "endpoint": "/v1/chat/completions",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "upstream_model": "gpt-4o-mini",
        "stream": 0,
        "status": 200,
        "error": None,
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_tokens": 0,
        "estimated": 0,
        "latency_ms": 12.5,
        "ttft_ms": None,
        "key_id": "key-a",
        "project": "web",
        "department": "eng",
        "user": None,
        "tags": None,
        "cost_micros": 100,
        "priced": 1,
        "cache_hit": 0,
        "deployment": "openai",
        "route_reason": None,
        "attempts": 1,
        "saved_micros": 0,
        "detectors": None,
    }
    unknown = set(fields) - set(defaults)
    assert not unknown, unknown
    defaults.update(fields)
    return tuple(defaults[c] for c in COLUMNS)


def write(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """One group commit, as the writer does it: the inserts, then the rollup hook."""
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(_USAGE_SQL, rows)
    HOOK(conn, {_USAGE_SQL: list(rows)})
    conn.execute("COMMIT")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite_utils.Database]:
    """A fresh, migrated store."""
    store = open_store(tmp_path / "aigw.db")
    yield store
    store.conn.close()
