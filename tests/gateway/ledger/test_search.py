"""Searching ledger records and admin events: filters, the time range found by binary search,
trace id windows, paging, and a request's timeline; and the time-ordered trace ids."""

from __future__ import annotations

import random
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlite_utils

from appliance.store import transaction
from gateway.audit import search
from gateway.audit.search import EventQuery, RequestQuery
from gateway.tenancy import audit
from gateway.trace import _trace_id, trace_time
from tests.gateway.ledger.conftest import ledger_row, write

NOW = datetime(2026, 6, 1, tzinfo=UTC)
N = 6000
STEP = 5 * 86400 / N  # five days of records, oldest first


def made_trace_id(at: float, rng: random.Random) -> str:
    """A trace id as the gateway makes it for a request at `at`."""
    return f"{int(at * 1000):012x}{rng.getrandbits(80):020x}"


@pytest.fixture
def ledger(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """N records over the five days before NOW; what each holds, for brute-force answers."""
    rng = random.Random(7)
    start = NOW.timestamp() - 5 * 86400
    rows, expected = [], []
    for i in range(N):
        at = start + i * STEP
        fields = {
            "trace_id": made_trace_id(at, rng) if i % 2 else f"client-{i}",
            "key_id": f"key-{i % 7}",
            "user": rng.choice([None, "ann", "bob"]),
            "project": f"p{i % 3}",
            "status": rng.choice([200, 200, 200, 429, 500, 404]),
        }
        rows.append(ledger_row(at, **fields))
        expected.append({**fields, "id": i + 1, "at": at})
    write(db.conn, rows)
    return expected


def _all(conn: sqlite3.Connection, q: RequestQuery, order: str = "desc") -> list[int]:
    """Every matching id, page after page."""
    ids: list[int] = []
    cursor = None
    while True:
        page = search.search_requests(conn, q, limit=250, cursor=cursor, order=order, now=NOW)
        ids += [r["id"] for r in page.rows]
        if page.cursor is None:
            return ids
        cursor = page.cursor


def _brute(rows: list[dict[str, Any]], since: datetime, until: datetime, **eq: Any) -> list[int]:
    lo, hi = since.timestamp(), until.timestamp()
    return [
        r["id"]
        for r in rows
        if lo <= r["at"] < hi
        and all(r[k] == v for k, v in eq.items() if k != "status")
        and (eq.get("status") is None or eq["status"](r["status"]))
    ]


def test_filters_in_a_time_range_match_a_full_scan(
    db: sqlite_utils.Database, ledger: list[dict[str, Any]]
) -> None:
    since, until = NOW - timedelta(days=3, hours=5), NOW - timedelta(days=1, minutes=7)
    q = RequestQuery(key="key-3", user="bob", since=since, until=until)
    expected = _brute(ledger, since, until, key_id="key-3", user="bob")
    assert expected and _all(db.conn, q) == expected[::-1]
    assert _all(db.conn, q, "asc") == expected
    q = RequestQuery(project="p1", status="4xx", since=since, until=until)
    expected = _brute(ledger, since, until, project="p1", status=lambda s: 400 <= s < 500)
    assert _all(db.conn, q, "asc") == expected
    q = RequestQuery(status="error", since=since, until=until)
    assert _all(db.conn, q, "asc") == _brute(ledger, since, until, status=lambda s: s >= 400)
    q = RequestQuery(status="429", since=since, until=until)
    assert _all(db.conn, q, "asc") == _brute(ledger, since, until, status=lambda s: s == 429)


def test_the_time_range_is_found_by_binary_search_then_scanned(
    db: sqlite_utils.Database, ledger: list[dict[str, Any]]
) -> None:
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    since = NOW - timedelta(hours=30)
    page = search.search_requests(
        db.conn, RequestQuery(user="ann", since=since, until=NOW), limit=10, now=NOW
    )
    db.conn.set_trace_callback(None)
    point_reads = [s for s in statements if "LIMIT 1" in s]
    assert 0 < len(point_reads) <= 2 * 16  # about log2(6000) reads per bound
    (scan,) = [s for s in statements if s.startswith("SELECT * FROM usage")]
    first, end = (int(x) for x in re.findall(r"id (?:>=|<) (\d+)", scan))
    in_range = _brute(ledger, since, NOW)
    assert (first, end) == (in_range[0], in_range[-1] + 1)  # only the range is scanned
    assert [r["id"] for r in page.rows] == _brute(ledger, since, NOW, user="ann")[::-1][:10]


def test_the_default_range_is_the_last_24_hours(
    db: sqlite_utils.Database, ledger: list[dict[str, Any]]
) -> None:
    page = search.search_requests(db.conn, RequestQuery(key="key-1"), limit=1000, now=NOW)
    assert (page.since, page.until) == (NOW - timedelta(hours=24), NOW)
    expected = _brute(ledger, NOW - timedelta(hours=24), NOW, key_id="key-1")
    assert [r["id"] for r in page.rows] == expected[::-1]


def test_a_trace_id_made_here_narrows_the_range_to_its_window(
    db: sqlite_utils.Database, ledger: list[dict[str, Any]]
) -> None:
    old = ledger[1001]  # about four days ago: outside the default range
    assert trace_time(old["trace_id"]) is not None
    page = search.search_requests(
        db.conn, RequestQuery(trace_id=old["trace_id"]), limit=10, now=NOW
    )
    assert [r["id"] for r in page.rows] == [old["id"]]
    assert page.since is not None and page.until is not None
    assert page.until - page.since == 2 * search.TRACE_WINDOW
    # A client's id: the default range only, unless since/until say otherwise.
    client = ledger[1000]
    q = RequestQuery(trace_id=client["trace_id"])
    assert search.search_requests(db.conn, q, limit=10, now=NOW).rows == []
    q = RequestQuery(trace_id=client["trace_id"], since=NOW - timedelta(days=5))
    assert [r["id"] for r in search.search_requests(db.conn, q, limit=10, now=NOW).rows] == [
        client["id"]
    ]


def test_a_client_id_that_looks_made_here_falls_back_to_the_default_range(
    db: sqlite_utils.Database,
) -> None:
    lookalike = made_trace_id(NOW.timestamp() - 40 * 86400, random.Random(1))
    write(db.conn, [ledger_row(NOW.timestamp() - 3600, trace_id=lookalike)])
    page = search.search_requests(db.conn, RequestQuery(trace_id=lookalike), limit=5, now=NOW)
    assert [r["trace_id"] for r in page.rows] == [lookalike]


def test_records_come_back_as_stored(db: sqlite_utils.Database) -> None:
    write(db.conn, [ledger_row(NOW.timestamp() - 60, trace_id="t-1", stream=1)])
    (row,) = search.search_requests(db.conn, RequestQuery(), limit=5, now=NOW).rows
    assert row["stream"] == 1 and row["hash"] is None and "detectors" in row


def test_bad_filters_are_refused() -> None:
    for bad in ("20", "6xx", "errors", "2XX"):
        with pytest.raises(ValueError, match="'status' must be"):
            search.status_clause(bad)


# --- admin events and the timeline ----------------------------------------------------------


def _event(db: sqlite_utils.Database, actor: str, action: str, kind: str, oid: str) -> None:
    with transaction(db):
        audit.record(db, actor, action, kind, oid, None, {"n": oid})


def test_events_by_filter_and_page(db: sqlite_utils.Database) -> None:
    for i in range(30):
        _event(db, f"token:{i % 2}", "create" if i % 3 else "delete", "key", f"k{i}")
    q = EventQuery(actor="token:1", action="create")
    ids, cursor = [], None
    while True:
        page = search.search_events(db.conn, q, limit=4, cursor=cursor)
        ids += [r["id"] for r in page.rows]
        if page.cursor is None:
            break
        cursor = page.cursor
    expected = [i + 1 for i in range(30) if i % 2 == 1 and i % 3]
    assert ids == expected[::-1]
    (row,) = search.search_events(db.conn, EventQuery(object_id="k5"), limit=5).rows
    assert row["after"] == {"n": "k5"} and row["actor"] == "token:1"
    future = EventQuery(since=datetime.now(UTC) + timedelta(hours=1))
    assert search.search_events(db.conn, future, limit=5).rows == []


def test_a_timeline_has_the_record_and_its_keys_events(db: sqlite_utils.Database) -> None:
    now = datetime.now(UTC)
    _event(db, "token:a", "create", "key", "key-t")
    _event(db, "token:a", "create", "key", "key-other")
    trace = _trace_id()
    write(db.conn, [ledger_row(now.timestamp(), trace_id=trace, key_id="key-t")])
    found = search.timeline(db.conn, trace)
    assert found is not None
    assert [r["trace_id"] for r in found["requests"]] == [trace]
    assert [(e["object_id"], e["action"]) for e in found["events"]] == [("key-t", "create")]
    assert search.timeline(db.conn, _trace_id()) is None


def test_trace_ids_made_here_carry_their_time() -> None:
    before = datetime.now(UTC).timestamp()
    ids = [_trace_id() for _ in range(100)]
    after = datetime.now(UTC).timestamp()
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in ids) and len(set(ids)) == 100
    times = [trace_time(t) for t in ids]
    assert all(t is not None and before - 0.001 <= t <= after + 0.001 for t in times)
    assert ids == sorted(ids, key=lambda t: t[:12])  # time-ordered (to the millisecond)
    for other in ("client-1", "0" * 32, "f" * 32, "A" * 32):
        assert trace_time(other) is None
