"""Budget periods on the calendar of the box's time zone: daily, weekly, monthly, or total.

A period starts at local midnight (weekly: Monday, as in ISO weeks; monthly: the 1st) and ends
where the next one starts, so a day is 23 or 25 hours long across a DST change and a month
is as long as it is. Times go in and out as epoch seconds; the zone only decides where the
boundaries fall. A local midnight that does not exist (a zone that springs forward at 00:00)
resolves to the instant of the change, which is when that day really began.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

PERIODS = ("daily", "weekly", "monthly", "total")
FOREVER = math.inf


def _midnight(day: date, tz: ZoneInfo) -> float:
    """Epoch seconds of the local midnight that begins `day`."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def window(period: str, tz: ZoneInfo, now: float) -> tuple[float, float]:
    """The period containing `now`: (start, end) in epoch seconds; total is (-inf, inf)."""
    if period == "total":
        return -FOREVER, FOREVER
    today = datetime.fromtimestamp(now, tz).date()
    if period == "daily":
        first, after = today, today + timedelta(days=1)
    elif period == "weekly":
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    elif period == "monthly":
        first = today.replace(day=1)
        after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    else:
        raise ValueError(f"unknown budget period {period!r}")
    return _midnight(first, tz), _midnight(after, tz)


def local_iso(epoch: float, tz: ZoneInfo) -> str:
    """An epoch time as ISO-8601 in the box's zone, with its offset (for people and the API)."""
    return datetime.fromtimestamp(epoch, tz).isoformat(timespec="seconds")


def utc_iso(epoch: float) -> str:
    """An epoch time in the ledger's own text form (UTC, milliseconds, Z) for comparisons."""
    when = datetime.fromtimestamp(epoch, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
