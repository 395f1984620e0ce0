"""Time ranges of the ledger as id ranges, found without an index on `ts`.

The ledger is append-only and unindexed (a commit touches only its last pages). Rows are
inserted in the order requests finish, so ids are time-ordered: a binary search over the rowid,
reading one row's `ts` per step, turns a time into an id in about 30 indexed lookups.
A wall-clock step backwards can put a few rows out of order; readers that need exact edges
also filter on `ts` within the id range.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from gateway.ledger.hours import ts_text

_NEXT = "SELECT id, ts FROM usage WHERE id >= ? ORDER BY id LIMIT 1"


def boundary_id(conn: sqlite3.Connection, when: datetime | str) -> int:
    """The smallest id whose row is at or after `when` (one past the last id when none is).

    Rows with a smaller id are older than `when`, rows from this id on are not.
    """
    ts = when if isinstance(when, str) else ts_text(when)
    # Two queries: SQLite answers a lone min() or max() from the rowid b-tree's edge, but
    # scans the whole table for both in one.
    first = conn.execute("SELECT min(id) FROM usage").fetchone()[0]
    last = conn.execute("SELECT max(id) FROM usage").fetchone()[0]
    if first is None:
        return 1
    lo, hi = first, last + 1
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute(_NEXT, (mid,)).fetchone()
        if row is None or row[1] >= ts:
            hi = mid
        else:
            lo = min(
                row[0] + 1, hi
            )  # min(): rows out of time order must not end the search past hi
    return lo


def id_range(conn: sqlite3.Connection, since: datetime, until: datetime | None) -> tuple[int, int]:
    """[first, end) ids of the rows in [since, until); until None means up to the newest row."""
    first = boundary_id(conn, since)
    if until is None:
        last = conn.execute("SELECT max(id) FROM usage").fetchone()[0]
        return first, (last or 0) + 1
    return first, boundary_id(conn, until)
