"""Spent amounts for budgets, rebuilt at start from the rollups and the ledger.

A budget period starts at midnight in the box's time zone, which is not always a whole UTC hour
(Asia/Kolkata is UTC+5:30). The whole UTC hours of a period come from `rollups` (a few hundred
rows an hour, however many requests); the partial hours at its edges from the raw ledger rows,
found by id range (see `ids`), so the answer is exact to the millisecond and never scans more
than two hours of records.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import datetime

import sqlite_utils

from gateway.ledger.hours import ceil_hour, floor_hour, hour_key, ts_text, utc
from gateway.ledger.ids import id_range

# A budget level → the column that names its target (the same in `usage` and `rollups`).
LEVELS = {"department": "department", "project": "project", "user": "user", "key": "key_id"}


def connection(db: sqlite_utils.Database | sqlite3.Connection) -> sqlite3.Connection:
    """The sqlite3 connection under either handle."""
    return db.conn if isinstance(db, sqlite_utils.Database) else db


def _where(filters: Mapping[str, str]) -> tuple[str, list[str]]:
    return "".join(f" AND {col} = ?" for col in filters), list(filters.values())


def _raw(
    conn: sqlite3.Connection,
    column: str | None,
    filters: Mapping[str, str],
    since: datetime,
    until: datetime | None,
) -> dict[str, int]:
    """Cost of ledger rows in [since, until), by `column` (one '' group when None)."""
    first, end = id_range(conn, since, until)
    if first >= end:
        return {}
    where, args = _where(filters)
    group = column or "''"
    bounds = [ts_text(since), ts_text(until) if until else "~"]
    rows = conn.execute(
        f"SELECT {group}, SUM(cost_micros) FROM usage WHERE id >= ? AND id < ? "
        f"AND ts >= ? AND ts < ?{where} GROUP BY 1",
        [first, end, *bounds, *args],
    )
    return {g: int(c) for g, c in rows if g is not None}


def _rolled(
    conn: sqlite3.Connection,
    column: str | None,
    filters: Mapping[str, str],
    first_hour: datetime,
    end_hour: datetime | None,
) -> dict[str, int]:
    """Cost from the rollups of the hours in [first_hour, end_hour), by `column`."""
    where, args = _where(filters)
    group = column or "''"
    end = hour_key(end_hour) if end_hour is not None else "~"
    rows = conn.execute(
        f"SELECT {group}, SUM(cost_micros) FROM rollups WHERE hour >= ? AND hour < ?{where} "
        "GROUP BY 1",
        [hour_key(first_hour), end, *args],
    )
    return {g: int(c) for g, c in rows if c is not None}


def _spent(
    db: sqlite_utils.Database | sqlite3.Connection,
    column: str | None,
    filters: Mapping[str, str],
    since_utc: datetime,
    until_utc: datetime | None,
) -> dict[str, int]:
    conn = connection(db)
    since = utc(since_utc)
    until = utc(until_utc) if until_utc is not None else None
    first_hour = ceil_hour(since)
    end_hour = floor_hour(until) if until is not None else None
    parts: list[dict[str, int]]
    if end_hour is not None and end_hour <= first_hour:  # within one hour, or two partial ones
        parts = [_raw(conn, column, filters, since, until)]
    else:
        parts = [
            _raw(conn, column, filters, since, first_hour),
            _rolled(conn, column, filters, first_hour, end_hour),
        ]
        if end_hour is not None and until is not None and end_hour < until:
            parts.append(_raw(conn, column, filters, end_hour, until))
    out: dict[str, int] = {}
    for part in parts:
        for group, cost in part.items():
            if group != "" or column is None:
                out[group] = out.get(group, 0) + cost
    return out


def spent(
    db: sqlite_utils.Database | sqlite3.Connection,
    *,
    department: str | None = None,
    project: str | None = None,
    user: str | None = None,
    key_id: str | None = None,
    since_utc: datetime,
    until_utc: datetime | None = None,
) -> int:
    """Micros spent in [since_utc, until_utc) by the requests matching every given filter."""
    given = {"department": department, "project": project, "user": user, "key_id": key_id}
    filters = {col: value for col, value in given.items() if value is not None}
    return _spent(db, None, filters, since_utc, until_utc).get("", 0)


def spent_by(
    db: sqlite_utils.Database | sqlite3.Connection,
    level: str,
    *,
    since_utc: datetime,
    until_utc: datetime | None = None,
) -> dict[str, int]:
    """Micros spent in [since_utc, until_utc) by every target of a budget level, in one pass.

    For rebuilding all budgets of a level and period at start: one query per part instead of
    one per budget. Targets without spending are absent.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    return _spent(db, LEVELS[level], {}, since_utc, until_utc)
