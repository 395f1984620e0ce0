"""Time in the ledger: record timestamps, hour keys of the rollups, and hour arithmetic.

A ledger row's `ts` is UTC text with milliseconds (`2025-01-31T13:05:01.123Z`), formatted by
SQLite from epoch seconds. A rollup's `hour` is the UTC hour it sums (`2025-01-31T13:00:00Z`).
The two formats do not compare with each other as text (`13:00:00.000Z` < `13:00:00Z`), so
code that bounds ledger rows by an hour converts it with `ts_text` first.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache

HOUR = timedelta(hours=1)
_HOUR_MS = 3_600_000
# SQLite's 'unixepoch' modifier computes milliseconds as (int)(s*1000 + this + 0.5) - this, in
# doubles; doing the same here puts a row in the same hour as its `ts` text, to the millisecond.
_JD_EPOCH_MS = 210866760000000.0


def epoch_hour(seconds: float) -> int:
    """The UTC hour (hours since 1970) that SQLite's `ts` of these epoch seconds falls in."""
    return (int(seconds * 1000.0 + _JD_EPOCH_MS + 0.5) - int(_JD_EPOCH_MS)) // _HOUR_MS


@lru_cache(maxsize=4096)
def hour_text(hour: int) -> str:
    """A rollup's hour key for an hour index (hours since 1970, UTC)."""
    return time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(hour * 3600))


def utc(when: datetime) -> datetime:
    """`when` in UTC; a naive time is taken to be UTC already."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def floor_hour(when: datetime) -> datetime:
    """The start of the UTC hour `when` falls in."""
    return utc(when).replace(minute=0, second=0, microsecond=0)


def ceil_hour(when: datetime) -> datetime:
    """`when` if it starts a UTC hour, else the start of the next one."""
    floor = floor_hour(when)
    return floor if floor == utc(when) else floor + HOUR


def hour_key(when: datetime) -> str:
    """The rollup hour key of the UTC hour `when` falls in."""
    return floor_hour(when).strftime("%Y-%m-%dT%H:00:00Z")


def ts_text(when: datetime) -> str:
    """`when` as a ledger timestamp (UTC, milliseconds, Z), for comparisons with `usage.ts`."""
    u = utc(when)
    return u.strftime("%Y-%m-%dT%H:%M:%S.") + f"{u.microsecond // 1000:03d}Z"
