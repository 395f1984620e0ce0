"""What the ledger says was spent: read at start and at reload, never per request.

Budget counters start from `gateway.ledger.queries.spent_by` (whole UTC hours from the
rollups, the partial hours at a period's edges from the raw rows found by id range), one pass
per level instead of one query per budget. The breaker's baseline needs per-minute sums of the
last hours, which the hourly rollups cannot give, so it reads the raw rows of that span (again
bounded by id, the usage table having no index on time).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlite_utils

from gateway.governance.periods import utc_iso
from gateway.ledger.ids import boundary_id
from gateway.ledger.queries import spent_by

LEVELS = ("department", "project", "user", "key")


def spent_since(db: sqlite_utils.Database, since: float) -> dict[tuple[str, str], int]:
    """Micro-units spent since `since` (epoch seconds; -inf: ever), by (level, target)."""
    since_utc = datetime.fromtimestamp(max(since, 0.0), UTC)
    out: dict[tuple[str, str], int] = {}
    for level in LEVELS:
        for target, micros in spent_by(db, level, since_utc=since_utc).items():
            if micros:
                out[level, target] = micros
    return out


def spend_by_minute(
    db: sqlite_utils.Database, since: float
) -> list[tuple[str | None, str | None, float, int]]:
    """(key id, project, minute start, micro-units) of every minute since `since` that cost."""
    mark = utc_iso(since)
    sql = (
        "SELECT key_id, project, substr(ts, 1, 16) AS minute, sum(cost_micros) FROM usage "
        "WHERE id >= ? AND ts >= ? AND cost_micros > 0 GROUP BY key_id, project, minute"
    )
    out = []
    for key_id, project, minute, total in db.execute(
        sql, [boundary_id(db.conn, mark), mark]
    ).fetchall():
        start = datetime.fromisoformat(minute).replace(tzinfo=UTC).timestamp()
        out.append((key_id, project, start, int(total)))
    return out
