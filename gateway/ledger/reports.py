"""Spend reports and the ROI view, read from the hourly rollups; CSV for finance.

Reports are as fine as the rollups: one UTC hour. A report covers the hours that *start* in
[since, until), and an hour belongs to the bucket (local hour, day or month in the box's time
zone) in which it starts. In a zone at a whole-hour offset (UTC, Europe/Berlin, America/New_York,
DST included) every local day is exactly its hours. In a zone at a half-hour offset
(Asia/Kolkata, UTC+5:30) the hour 18:00-19:00 UTC runs from 23:30 to 00:30 local and counts in
full to the day it starts in, so such a zone's days are shifted by up to 30 minutes. Budgets
need the exact figure and use `queries.spent`, which reads the raw records at the edges.

The grouping runs in SQLite over the rollups of the range, one query per local day or month
(its UTC hours worked out here, DST included), so a report costs what scanning a range's
rollups costs, whatever the number of raw records behind them.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlite_utils

from gateway.errors import InvalidRequest
from gateway.ledger.hours import ceil_hour, hour_key, ts_text
from gateway.ledger.ids import id_range
from gateway.ledger.queries import connection
from gateway.money import format_fixed

# Report dimension → column in the rollups.
DIMENSIONS = {
    "department": "department",
    "project": "project",
    "user": "user",
    "key": "key_id",
    "model": "model",
    "provider": "provider",
    "tag": "tag",
}
TAG_DIMENSIONS = ("tag", "department", "project")  # what rollup_tags keeps
BUCKETS = ("hour", "day", "month")
SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_micros")
TAG_SUMS = ("requests", "input_tokens", "output_tokens", "cost_micros")
MAX_RANGE = timedelta(days=3660)
MAX_TOP = 10_000
_PARTIAL_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def zone_of(tz: str | ZoneInfo) -> ZoneInfo:
    """A ZoneInfo from a name (the box's `[box] timezone`, already validated) or itself."""
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def parse_time(raw: str, name: str, tz: str | ZoneInfo = "UTC") -> datetime:
    """A report bound: `2025-03` or `2025-03-01` (midnight in the box's zone), or ISO-8601
    (a time without a zone is UTC, as in `/usage`)."""
    try:
        if _PARTIAL_DATE.match(raw):
            year, month, day = (int(p) for p in (raw + "-01").split("-")[:3])
            return datetime(year, month, day, tzinfo=zone_of(tz))
        when = datetime.fromisoformat(raw)
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"{name!r} must be a date (2025-03-01, midnight in the box's time zone), a month "
            "(2025-03) or an ISO-8601 time such as 2025-03-01T00:00:00Z",
            param=name,
        ) from None


def _check_range(since: datetime, until: datetime) -> None:
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("report bounds must be aware datetimes")
    if until <= since:
        raise InvalidRequest("'until' must be after 'since'", param="until")
    if until - since > MAX_RANGE:
        raise InvalidRequest("a report covers at most 10 years; narrow since/until", param="since")


def uses_tags(group_by: Sequence[str], filters: Mapping[str, str]) -> bool:
    """True when a report reads `rollup_tags` (grouped or filtered by tag)."""
    return "tag" in group_by or "tag" in filters


def spend_columns(group_by: Sequence[str], bucket: str | None, tagged: bool) -> list[str]:
    """The fields of a spend report's rows, in display order."""
    sums = [s for s in (TAG_SUMS if tagged else SUMS) if s != "cost_micros"]
    return [*(["bucket"] if bucket else []), *group_by, *sums, "cost_micros", "cost"]


def _check_dimensions(group_by: Sequence[str], filters: Mapping[str, str]) -> None:
    for name in (*group_by, *filters):
        if name not in DIMENSIONS:
            raise InvalidRequest(
                f"cannot group or filter by {name!r}; use {', '.join(DIMENSIONS)}",
                param="group_by" if name in group_by else name,
            )
    if len(set(group_by)) != len(group_by):
        raise InvalidRequest("group_by names a dimension twice", param="group_by")
    if uses_tags(group_by, filters):
        others = [n for n in (*group_by, *filters) if n not in TAG_DIMENSIONS]
        if others:
            raise InvalidRequest(
                f"tag reports combine only with department and project (tag rollups keep only "
                f"those), not with {', '.join(dict.fromkeys(others))}",
                param="group_by",
            )


def _local_start(when: datetime, bucket: str, zone: ZoneInfo) -> date:
    local = when.astimezone(zone)
    return date(local.year, local.month, 1 if bucket == "month" else local.day)


def _next(day: date, bucket: str) -> date:
    if bucket == "day":
        return day + timedelta(days=1)
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def bucket_ranges(
    lo: datetime, hi: datetime, bucket: str, zone: ZoneInfo
) -> list[tuple[str, str, str]]:
    """(label, first hour key, end hour key) of each local day or month in [lo, hi).

    An hour belongs to the bucket its start falls in, so a bucket is the UTC hours from the
    one starting at or after its local midnight to the one starting at or after the next.
    """
    out: list[tuple[str, str, str]] = []
    day = _local_start(lo, bucket, zone)
    while True:
        following = _next(day, bucket)
        first = max(ceil_hour(datetime(day.year, day.month, day.day, tzinfo=zone)), lo)
        end = min(
            ceil_hour(datetime(following.year, following.month, following.day, tzinfo=zone)), hi
        )
        if first >= hi:
            return out
        if first < end:
            label = day.isoformat()[: 10 if bucket == "day" else 7]
            out.append((label, hour_key(first), hour_key(end)))
        day = following


def _hour_label(hour: str, zone: ZoneInfo) -> str:
    """A rollup hour as the local time it starts at, with its offset (ISO 8601)."""
    start = datetime.fromisoformat(hour.replace("Z", "+00:00")).astimezone(zone)
    return start.isoformat().replace("+00:00", "Z") if zone.key == "UTC" else start.isoformat()


def spend_report(
    db: sqlite_utils.Database | sqlite3.Connection,
    *,
    group_by: Sequence[str] = (),
    since: datetime,
    until: datetime,
    bucket: str | None = None,
    top: int | None = None,
    tz: str | ZoneInfo = "UTC",
    filters: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Requests, tokens and cost by `group_by` (and bucket) over the hours starting in
    [since, until).

    `top` keeps the N groups with the highest cost over the whole range (all their buckets).
    A request with several tags counts once for each in a tag report.
    """
    filters = dict(filters or {})
    _check_dimensions(group_by, filters)
    _check_range(since, until)
    if bucket is not None and bucket not in BUCKETS:
        raise InvalidRequest(f"bucket must be one of {', '.join(BUCKETS)}", param="bucket")
    tagged = uses_tags(group_by, filters)
    table, sums = ("rollup_tags", TAG_SUMS) if tagged else ("rollups", SUMS)
    lo, hi = ceil_hour(since), ceil_hour(until)
    if lo >= hi:
        return []
    zone = zone_of(tz)
    cols = [DIMENSIONS[d] for d in group_by]
    where = "".join(f" AND {DIMENSIONS[n]} = ?" for n in filters)
    # One query per day or month, grouping by the dimensions only: no date function per row,
    # and many small sorts cost less than one large one.
    head = "hour" if bucket == "hour" else "''"
    select = ", ".join([head, *cols, *(f"SUM({s})" for s in sums)])
    grouping = ", ".join(str(i) for i in range(1, len(cols) + 2))
    sql = f"SELECT {select} FROM {table} WHERE hour >= ? AND hour < ?{where} GROUP BY {grouping}"
    if bucket in ("day", "month"):
        ranges = bucket_ranges(lo, hi, bucket, zone)
    else:
        ranges = [("", hour_key(lo), hour_key(hi))]
    merged: dict[tuple[Any, ...], list[int]] = {}
    labels: dict[str, str] = {}
    conn = connection(db)
    for label, first, end in ranges:
        for row in conn.execute(sql, [first, end, *filters.values()]):
            b = row[0]
            if bucket == "hour":
                b = labels.get(b) or labels.setdefault(b, _hour_label(b, zone))
            key, values = (label or b, *row[1 : len(cols) + 1]), row[len(cols) + 1 :]
            acc = merged.get(key)
            if acc is None:
                merged[key] = list(values)
            else:
                for i, v in enumerate(values):
                    acc[i] += v
    if top is not None:
        merged = _top(merged, top)
    return _rows(merged, group_by, bucket, sums)


def _top(merged: dict[tuple[Any, ...], list[int]], n: int) -> dict[tuple[Any, ...], list[int]]:
    """Only the rows of the N groups that cost most over the whole range."""
    totals: dict[tuple[Any, ...], int] = {}
    for key, values in merged.items():
        totals[key[1:]] = totals.get(key[1:], 0) + values[-1]
    ranked = sorted(totals, key=lambda g: (-totals[g], g))
    keep = set(ranked[:n])
    return {k: v for k, v in merged.items() if k[1:] in keep}


def _rows(
    merged: dict[tuple[Any, ...], list[int]],
    group_by: Sequence[str],
    bucket: str | None,
    sums: Sequence[str],
) -> list[dict[str, Any]]:
    ordered = sorted(merged.items(), key=lambda kv: (kv[0][0], -kv[1][-1], kv[0][1:]))
    out = []
    for key, values in ordered:
        row: dict[str, Any] = {"bucket": key[0]} if bucket is not None else {}
        for name, value in zip(group_by, key[1:], strict=True):
            row[name] = value or None  # '' in the rollups: the request had none
        row.update(zip(sums, (int(v) for v in values), strict=True))
        row["cost"] = format_fixed(row["cost_micros"])
        out.append(row)
    return out


def _safe(value: Any) -> Any:
    """A text cell that a spreadsheet will not run as a formula (OWASP CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], currency: str) -> str:
    """Rows as CSV for finance: a header, amounts as 6-decimal strings, a currency column.

    `columns` are the rows' fields in order (`spend_columns`, `ROI_COLUMNS`); `*_micros`
    fields are left out in favour of their decimal form.
    """
    shown = [c for c in columns if not c.endswith("_micros")]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*shown, "currency"])
    for row in rows:
        writer.writerow([*(_safe(row.get(c)) for c in shown), currency])
    return buf.getvalue()


# --- ROI ------------------------------------------------------------------------------------

ROI_COLUMNS = [
    "business_line",
    "outcomes",
    "value_micros",
    "value",
    "cost_micros",
    "cost",
    "ratio",
    "unmatched_traces",
]
TRACE_LOOKBACK = timedelta(days=7)


def roi_report(
    db: sqlite_utils.Database | sqlite3.Connection,
    *,
    since: datetime,
    until: datetime,
    trace_lookback: timedelta = TRACE_LOOKBACK,
) -> list[dict[str, Any]]:
    """Cost against business value per business line, for the outcomes recorded in
    [since, until).

    A line's value is the sum of its outcomes. Its cost is what its outcomes point at: a tag's
    spend over the report's hours (from the tag rollups), and each trace's recorded cost. An
    outcome is usually recorded soon after its request, so traces are looked up in the ledger
    from `since - trace_lookback` to `until` (the ledger has no index by trace id); those not
    found there (or already dropped by retention) are counted as `unmatched_traces`.
    """
    _check_range(since, until)
    conn = connection(db)
    bounds = [ts_text(since), ts_text(until)]
    lines: dict[str, dict[str, Any]] = {}
    for line, trace_id, tag, value in conn.execute(
        "SELECT business_line, trace_id, tag, value_micros FROM outcomes "
        "WHERE ts >= ? AND ts < ? ORDER BY id",
        bounds,
    ):
        entry = lines.setdefault(line, {"outcomes": 0, "value": 0, "traces": set(), "tags": set()})
        entry["outcomes"] += 1
        entry["value"] += value
        (entry["traces"] if trace_id is not None else entry["tags"]).add(trace_id or tag)
    tag_cost = _tag_costs(conn, {t for e in lines.values() for t in e["tags"]}, since, until)
    trace_cost = _trace_costs(conn, bounds, since - trace_lookback, until)
    out = []
    for line in sorted(lines):
        e = lines[line]
        cost = sum(tag_cost.get(t, 0) for t in e["tags"])
        cost += sum(trace_cost.get(t, 0) for t in e["traces"])
        out.append(
            {
                "business_line": line,
                "outcomes": e["outcomes"],
                "value_micros": e["value"],
                "value": format_fixed(e["value"]),
                "cost_micros": cost,
                "cost": format_fixed(cost),
                "ratio": round(e["value"] / cost, 4) if cost else None,
                "unmatched_traces": sum(1 for t in e["traces"] if t not in trace_cost),
            }
        )
    return out


def _tag_costs(
    conn: sqlite3.Connection, tags: set[str], since: datetime, until: datetime
) -> dict[str, int]:
    if not tags:
        return {}
    marks = ", ".join("?" * len(tags))
    rows = conn.execute(
        f"SELECT tag, SUM(cost_micros) FROM rollup_tags WHERE hour >= ? AND hour < ? "
        f"AND tag IN ({marks}) GROUP BY tag",
        [hour_key(ceil_hour(since)), hour_key(ceil_hour(until)), *sorted(tags)],
    )
    return {tag: int(cost) for tag, cost in rows}


def _trace_costs(
    conn: sqlite3.Connection, bounds: list[str], since: datetime, until: datetime
) -> dict[str, int]:
    """Cost of the ledger rows in [since, until) whose trace id an outcome in `bounds` names."""
    first, end = id_range(conn, since, until)
    rows = conn.execute(
        "SELECT trace_id, SUM(cost_micros) FROM usage WHERE id >= ? AND id < ? AND trace_id IN "
        "(SELECT trace_id FROM outcomes WHERE ts >= ? AND ts < ? AND trace_id IS NOT NULL) "
        "GROUP BY trace_id",
        [first, end, *bounds],
    )
    return {trace: int(cost) for trace, cost in rows}
