"""Hourly rollups kept in step with the ledger, inside the group-commit writer's transactions.

`rollup_hook(usage_sql)` gives the writer a hook that, for each batch, sums the batch's ledger
rows in Python by (UTC hour, department, project, user, key, provider, model) and by (UTC hour,
tag, department, project), then adds the sums to `rollups` and `rollup_tags` with one UPSERT per
group. A batch of 512 requests from a few keys becomes a handful of UPSERTs, and the sums commit
or roll back with the rows: a report over rollups always agrees with the ledger.

A dimension the request did not have (no key, no provider) is stored as '' because the rollups'
primary-key columns are NOT NULL. `errors` counts rows with status >= 400.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable
from functools import lru_cache
from operator import itemgetter
from typing import Any

from gateway.ledger.hours import epoch_hour, hour_text

Params = tuple[Any, ...]
Hook = Callable[[sqlite3.Connection, dict[str, list[Params]]], None]

DIMENSIONS = ("department", "project", "user", "key_id", "provider", "model")
_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_micros")
_TAG_SUMS = ("requests", "input_tokens", "output_tokens", "cost_micros")
# What the hook reads from a ledger row, in this order.
_COLUMNS = (
    "ts",
    "department",
    "project",
    "user",
    "key_id",
    "provider",
    "model",
    "status",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_micros",
    "tags",
)


def _upsert(table: str, keys: tuple[str, ...], sums: tuple[str, ...]) -> str:
    cols = ", ".join((*keys, *sums))
    marks = ", ".join("?" * (len(keys) + len(sums)))
    adds = ", ".join(f"{c} = {c} + excluded.{c}" for c in sums)
    return (
        f"INSERT INTO {table} ({cols}) VALUES ({marks}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {adds}"
    )


ROLLUP_UPSERT = _upsert("rollups", ("hour", *DIMENSIONS), _SUMS)
TAG_UPSERT = _upsert("rollup_tags", ("hour", "tag", "department", "project"), _TAG_SUMS)


def ledger_columns(usage_sql: str) -> list[str]:
    """The column names of an `INSERT INTO usage (...) VALUES (...)`, in parameter order.

    Refuses a statement whose values are not one `?` per column, since the hook reads its rows
    by position.
    """
    match = re.search(
        r"INSERT\s+INTO\s+usage\s*\(([^)]*)\)\s*VALUES\s*\((.*)\)\s*$", usage_sql, re.S
    )
    if match is None:
        raise ValueError("the ledger statement must be INSERT INTO usage (columns) VALUES (...)")
    columns = [c.strip() for c in match.group(1).split(",")]
    if match.group(2).count("?") != len(columns):
        raise ValueError("the ledger statement must take exactly one parameter per column")
    missing = [c for c in _COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"the ledger statement lacks column(s) {', '.join(missing)}")
    return columns


def _hour_of(ts: Any, cache: dict[Any, str]) -> str:
    """The hour key of a row's `ts` parameter: epoch seconds (as the gateway writes) or text."""
    if isinstance(ts, str):
        return ts[:13] + ":00:00Z"
    hour = epoch_hour(ts)
    text = cache.get(hour)
    if text is None:
        text = cache[hour] = hour_text(hour)
    return text


@lru_cache(maxsize=8)
def _getter(columns: tuple[str, ...]) -> itemgetter[Any]:
    """Reads what the hook needs from a row (built once per statement, not per batch)."""
    return itemgetter(*(columns.index(c) for c in _COLUMNS))


def aggregate(
    rows: Iterable[Params], columns: list[str]
) -> tuple[dict[tuple[str, ...], list[int]], dict[tuple[str, ...], list[int]]]:
    """The rows' sums by rollup key and by tag key (the hook's work before any SQL)."""
    get = _getter(tuple(columns))
    groups: dict[tuple[str, ...], list[int]] = {}
    tagged: dict[tuple[str, ...], list[int]] = {}
    hours: dict[Any, str] = {}
    for row in rows:
        ts, dep, proj, user, key, prov, model, status, tin, tout, tcached, cost, tags = get(row)
        hour = _hour_of(ts, hours)
        dep, proj = dep or "", proj or ""
        gkey = (hour, dep, proj, user or "", key or "", prov or "", model or "")
        err = 1 if status >= 400 else 0
        sums = groups.get(gkey)
        if sums is None:
            groups[gkey] = [1, err, tin, tout, tcached, cost]
        else:
            sums[0] += 1
            sums[1] += err
            sums[2] += tin
            sums[3] += tout
            sums[4] += tcached
            sums[5] += cost
        if tags:
            names = tags.split(",")
            for tag in dict.fromkeys(names) if len(names) > 1 else names:
                if not tag:
                    continue
                tkey = (hour, tag, dep, proj)
                tsums = tagged.get(tkey)
                if tsums is None:
                    tagged[tkey] = [1, tin, tout, cost]
                else:
                    tsums[0] += 1
                    tsums[1] += tin
                    tsums[2] += tout
                    tsums[3] += cost
    return groups, tagged


def apply_rows(conn: sqlite3.Connection, rows: Iterable[Params], columns: list[str]) -> None:
    """Add ledger rows (parameters in `columns` order) to the rollups; call in their transaction."""
    groups, tagged = aggregate(rows, columns)
    if groups:
        conn.executemany(ROLLUP_UPSERT, [(*k, *v) for k, v in groups.items()])
    if tagged:
        conn.executemany(TAG_UPSERT, [(*k, *v) for k, v in tagged.items()])


def rollup_hook(usage_sql: str) -> Hook:
    """The writer's `on_batch` hook for the ledger statement `usage_sql`.

    Wire it where the writer is built: `GroupCommitWriter(..., on_batch=rollup_hook(_USAGE_SQL))`.
    Batches of other statements pass through untouched.
    """
    columns = ledger_columns(usage_sql)

    def on_batch(conn: sqlite3.Connection, by_sql: dict[str, list[Params]]) -> None:
        rows = by_sql.get(usage_sql)
        if rows:
            apply_rows(conn, rows, columns)

    return on_batch


def rebuild_rollups(conn: sqlite3.Connection, since_hour: str = "") -> None:
    """Recompute the rollups of hours >= `since_hour` from the ledger rows still held.

    For repairs and tests; hours whose records retention already dropped keep their rollups
    only if they are older than `since_hour`. Runs in the caller's transaction.
    """
    columns = ["ts", *(c for c in _COLUMNS if c != "ts")]
    conn.execute("DELETE FROM rollups WHERE hour >= ?", (since_hour,))
    conn.execute("DELETE FROM rollup_tags WHERE hour >= ?", (since_hour,))
    start = since_hour[:13]  # "2025-01-31T13": every ts of that hour and later sorts after it
    cursor = conn.execute(
        f"SELECT {', '.join(columns)} FROM usage WHERE ts >= ? ORDER BY id", (start,)
    )
    while chunk := cursor.fetchmany(50_000):
        apply_rows(conn, chunk, columns)
