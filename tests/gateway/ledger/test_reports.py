"""Spend reports against brute force over the records; buckets in local zones; CSV; ROI."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlite_utils

from gateway.errors import InvalidRequest
from gateway.ledger.outcomes import add_outcome, list_outcomes
from gateway.ledger.reports import (
    parse_time,
    roi_report,
    spend_columns,
    spend_report,
    to_csv,
)
from gateway.tenancy.audit import list_audit
from tests.gateway.ledger.conftest import ledger_row, write

START = datetime(2026, 3, 27, tzinfo=UTC)  # Europe/Berlin moves to summer time on 29 March
HOURS = 96
KEYS = {
    "k1": ("eng", "web", "ann", "support"),
    "k2": ("eng", "api", None, "support,summarize"),
    "k3": ("ops", "infra", "bob", None),
}
MODELS = {"gpt-4o": "openai", "claude": "anthropic", "qwen": "qwen"}
FIELD = {"key": "key_id"}


@pytest.fixture
def ledger(db: sqlite_utils.Database) -> sqlite_utils.Database:
    rng = random.Random(11)
    rows = []
    for i in range(4000):
        key = rng.choice(list(KEYS))
        dep, proj, user, tags = KEYS[key]
        model = rng.choice(list(MODELS))
        rows.append(
            ledger_row(
                START.timestamp() + i * HOURS * 3600 / 4000,
                key_id=key,
                department=dep,
                project=proj,
                user=user,
                tags=tags,
                model=model,
                provider=MODELS[model],
                status=rng.choice([200, 200, 200, 500]),
                input_tokens=rng.randrange(100),
                cost_micros=rng.randrange(1, 10_000),
            )
        )
    write(db.conn, rows)
    return db


def _records(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM usage"))


def _hour_start(ts: str) -> datetime:
    return datetime.fromisoformat(ts[:13] + ":00:00+00:00")


def _brute(
    db: sqlite_utils.Database,
    group_by: list[str],
    bucket: str | None,
    tz: str,
    since: datetime,
    until: datetime,
) -> dict[tuple[Any, ...], list[int]]:
    """The report computed from raw records: an hour belongs to the bucket it starts in."""
    out: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    zone = ZoneInfo(tz)
    for r in _records(db):
        hour = _hour_start(r["ts"])
        if not since <= hour < until:
            continue
        local = hour.astimezone(zone)
        b = {"day": local.strftime("%Y-%m-%d"), "month": local.strftime("%Y-%m"), None: None}[
            bucket
        ]
        key = (b, *(r[FIELD.get(g, g)] for g in group_by))
        acc = out[key]
        acc[0] += 1
        acc[1] += r["cost_micros"]
        acc[2] += r["status"] >= 400
    return dict(out)


def _as_brute(rows: list[dict[str, Any]], group_by: list[str]) -> dict[tuple[Any, ...], list[int]]:
    return {
        (r.get("bucket"), *(r[g] for g in group_by)): [r["requests"], r["cost_micros"], r["errors"]]
        for r in rows
    }


@pytest.mark.parametrize(
    "group_by",
    [
        [],
        ["department"],
        ["project"],
        ["user"],
        ["key"],
        ["model"],
        ["provider"],
        ["department", "model"],
    ],
)
def test_group_by_each_dimension(ledger: sqlite_utils.Database, group_by: list[str]) -> None:
    since, until = START + timedelta(hours=5), START + timedelta(hours=70)
    rows = spend_report(ledger, group_by=group_by, since=since, until=until)
    assert _as_brute(rows, group_by) == _brute(ledger, group_by, None, "UTC", since, until)
    costs = [r["cost_micros"] for r in rows]
    assert costs == sorted(costs, reverse=True)
    assert all(
        r["cost"] == f"{r['cost_micros'] // 10**6}.{r['cost_micros'] % 10**6:06d}" for r in rows
    )


@pytest.mark.parametrize("tz", ["Europe/Berlin", "Asia/Kolkata", "America/New_York", "UTC"])
@pytest.mark.parametrize("bucket", ["day", "month"])
def test_buckets_in_local_time(ledger: sqlite_utils.Database, tz: str, bucket: str) -> None:
    since, until = START, START + timedelta(hours=HOURS)
    rows = spend_report(
        ledger, group_by=["department"], since=since, until=until, bucket=bucket, tz=tz
    )
    assert _as_brute(rows, ["department"]) == _brute(
        ledger, ["department"], bucket, tz, since, until
    )
    assert [r["bucket"] for r in rows] == sorted(r["bucket"] for r in rows)


def test_hour_buckets_carry_the_local_offset(ledger: sqlite_utils.Database) -> None:
    since = datetime(2026, 3, 29, 0, tzinfo=UTC)
    rows = spend_report(
        ledger, since=since, until=since + timedelta(hours=3), bucket="hour", tz="Europe/Berlin"
    )
    assert [r["bucket"] for r in rows] == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:00 local never happened
        "2026-03-29T04:00:00+02:00",
    ]
    kolkata = spend_report(
        ledger, since=since, until=since + timedelta(hours=1), bucket="hour", tz="Asia/Kolkata"
    )
    assert [r["bucket"] for r in kolkata] == ["2026-03-29T05:30:00+05:30"]


def test_a_range_covers_the_hours_that_start_in_it(ledger: sqlite_utils.Database) -> None:
    since = START + timedelta(hours=1, minutes=30)
    rows = spend_report(ledger, since=since, until=since + timedelta(hours=1))
    (expected,) = _brute(
        ledger, [], None, "UTC", START + timedelta(hours=2), START + timedelta(hours=3)
    ).values()
    assert [rows[0]["requests"], rows[0]["cost_micros"]] == expected[:2]


def test_top_n_keeps_the_costliest_groups_in_every_bucket(ledger: sqlite_utils.Database) -> None:
    since, until = START, START + timedelta(hours=HOURS)
    totals = spend_report(ledger, group_by=["key"], since=since, until=until)
    top2 = [r["key"] for r in totals[:2]]
    rows = spend_report(ledger, group_by=["key"], since=since, until=until, bucket="day", top=2)
    assert {r["key"] for r in rows} == set(top2)
    assert len(rows) == 2 * 4  # four days
    assert (
        spend_report(ledger, group_by=["key"], since=since, until=until, top=1)[0]["key"] == top2[0]
    )


def test_tag_reports(ledger: sqlite_utils.Database) -> None:
    since, until = START, START + timedelta(hours=HOURS)
    rows = spend_report(ledger, group_by=["tag", "department"], since=since, until=until)
    expected: dict[tuple[str, str], int] = defaultdict(int)
    for r in _records(ledger):
        for tag in (r["tags"] or "").split(","):
            if tag:
                expected[(tag, r["department"])] += r["cost_micros"]
    assert {(r["tag"], r["department"]): r["cost_micros"] for r in rows} == expected
    assert "errors" not in rows[0] and "cached_tokens" not in rows[0]
    only = spend_report(
        ledger, group_by=["project"], since=since, until=until, filters={"tag": "summarize"}
    )
    assert [r["project"] for r in only] == ["api"]
    with pytest.raises(InvalidRequest, match=r"combine only with department and project.*model"):
        spend_report(ledger, group_by=["tag", "model"], since=since, until=until)


def test_bad_requests_are_refused(ledger: sqlite_utils.Database) -> None:
    since, until = START, START + timedelta(hours=1)
    for kwargs, message in [
        ({"group_by": ["team"]}, "cannot group or filter by 'team'"),
        ({"group_by": ["model", "model"]}, "twice"),
        ({"bucket": "week"}, "bucket must be one of"),
        ({"until": since}, "'until' must be after 'since'"),
        ({"since": since - timedelta(days=4000)}, "at most 10 years"),
    ]:
        args: dict[str, Any] = {"since": since, "until": until, **kwargs}
        with pytest.raises(InvalidRequest, match=message):
            spend_report(ledger, **args)


def test_csv_is_exact(db: sqlite_utils.Database) -> None:
    base = START.timestamp()
    write(
        db.conn,
        [
            ledger_row(base + 10, department="eng", model="gpt-4o", cost_micros=1_500_000),
            ledger_row(base + 20, department="eng", model="gpt-4o", cost_micros=250, status=500),
            ledger_row(base + 30, department="=cmd()", model="claude", cost_micros=7),
            ledger_row(base + 86400, department=None, key_id=None, model="qwen", cost_micros=0),
        ],
    )
    group_by = ["department", "model"]
    rows = spend_report(
        db, group_by=group_by, since=START, until=START + timedelta(days=2), bucket="day"
    )
    text = to_csv(rows, spend_columns(group_by, "day", False), "EUR")
    assert text == (
        "bucket,department,model,requests,errors,input_tokens,output_tokens,cached_tokens,"
        "cost,currency\r\n"
        "2026-03-27,eng,gpt-4o,2,1,20,10,0,1.500250,EUR\r\n"
        "2026-03-27,'=cmd(),claude,1,0,10,5,0,0.000007,EUR\r\n"
        "2026-03-28,,qwen,1,0,10,5,0,0.000000,EUR\r\n"
    )


def test_parse_time() -> None:
    kolkata = parse_time("2026-03-01", "since", "Asia/Kolkata")
    assert kolkata.astimezone(UTC) == datetime(2026, 2, 28, 18, 30, tzinfo=UTC)
    assert parse_time("2026-03", "since", "Europe/Berlin").astimezone(UTC) == datetime(
        2026, 2, 28, 23, tzinfo=UTC
    )
    assert parse_time("2026-03-01T10:00:00", "until") == datetime(2026, 3, 1, 10, tzinfo=UTC)
    with pytest.raises(InvalidRequest, match="'since' must be a date"):
        parse_time("yesterday", "since")


def test_outcomes_are_validated_and_audited(db: sqlite_utils.Database) -> None:
    for kwargs, param in [
        ({}, "trace_id"),
        ({"trace_id": "t", "tag": "support"}, "trace_id"),
        ({"tag": "Not A Tag"}, "tag"),
        ({"trace_id": "has space"}, "trace_id"),
        ({"tag": "support", "value_micros": -1}, "value_micros"),
        ({"tag": "support", "value_micros": True}, "value_micros"),
        ({"tag": "support", "business_line": " "}, "business_line"),
        ({"tag": "support", "note": "x" * 1001}, "note"),
    ]:
        args: dict[str, Any] = {"business_line": "Care", "value_micros": 1, **kwargs}
        with pytest.raises(InvalidRequest) as err:
            add_outcome(db, "test", **args)
        assert err.value.param == param
    row = add_outcome(db, "test", tag="support", business_line=" Care ", value_micros=5, note="n")
    assert row["business_line"] == "Care" and row["trace_id"] is None
    (entry,) = list_audit(db, object_type="outcome")
    assert entry["action"] == "create" and entry["after"]["value_micros"] == 5
    assert list_outcomes(db) == [row]
    assert list_outcomes(db, business_line="Other") == []


def test_roi_per_business_line(ledger: sqlite_utils.Database) -> None:
    base = START.timestamp() + HOURS * 3600 + 60
    write(
        ledger.conn,
        [
            ledger_row(base, trace_id="t-1", cost_micros=2_000_000, tags=None),
            ledger_row(base + 1, trace_id="t-2", cost_micros=500_000, tags=None),
        ],
    )
    add_outcome(ledger, "test", trace_id="t-1", business_line="Sales", value_micros=9_000_000)
    add_outcome(ledger, "test", trace_id="t-2", business_line="Sales", value_micros=1_000_000)
    add_outcome(ledger, "test", trace_id="t-missing", business_line="Sales", value_micros=0)
    add_outcome(ledger, "test", tag="summarize", business_line="Care", value_micros=3_000_000)
    add_outcome(ledger, "test", tag="nobody-uses", business_line="Idle", value_micros=1)
    now = datetime.now(UTC)
    rows = roi_report(ledger, since=START, until=now + timedelta(minutes=1))
    summarize = sum(r["cost_micros"] for r in _records(ledger) if "summarize" in (r["tags"] or ""))
    assert rows == [
        {
            "business_line": "Care",
            "outcomes": 1,
            "value_micros": 3_000_000,
            "value": "3.000000",
            "cost_micros": summarize,
            "cost": f"{summarize // 10**6}.{summarize % 10**6:06d}",
            "ratio": round(3_000_000 / summarize, 4),
            "unmatched_traces": 0,
        },
        {
            "business_line": "Idle",
            "outcomes": 1,
            "value_micros": 1,
            "value": "0.000001",
            "cost_micros": 0,
            "cost": "0.000000",
            "ratio": None,
            "unmatched_traces": 0,
        },
        {
            "business_line": "Sales",
            "outcomes": 3,
            "value_micros": 10_000_000,
            "value": "10.000000",
            "cost_micros": 2_500_000,
            "cost": "2.500000",
            "ratio": 4.0,
            "unmatched_traces": 1,
        },
    ]
    # outcomes recorded outside the range do not count
    assert roi_report(ledger, since=now + timedelta(hours=1), until=now + timedelta(hours=2)) == []
