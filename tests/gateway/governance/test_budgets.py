"""Budgets: reserve then settle at every level and period, hard refusals, thresholds, reloads,
and the rebuild from the ledger at start."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlite_utils

from gateway.auth import KeyEntry, KeyIndex
from gateway.governance import store
from gateway.governance.budgets import BudgetBook
from gateway.governance.errors import BudgetExceeded
from gateway.tenancy import store as tenancy
from tests.gateway.governance.conftest import (
    ACTOR,
    BERLIN,
    Clock,
    Recorder,
    add_usage,
    key_entry,
)

USD = 1_000_000


def _book(
    db: sqlite_utils.Database, clock: Clock, sink: Recorder, previous: BudgetBook | None = None
) -> BudgetBook:
    return BudgetBook.load(db, tz=BERLIN, clock=clock, sink=sink, currency="EUR", previous=previous)


def _budget(
    db: sqlite_utils.Database, level: str, target: str, period: str, limit: int, **kw: object
) -> str:
    row = store.create_budget(
        db,
        ACTOR,
        level=level,
        target=target,
        period=period,
        limit_micros=limit,
        **kw,  # type: ignore[arg-type]
    )
    return str(row["id"])


def _real_key(db: sqlite_utils.Database, **fields: object) -> KeyEntry:
    row, _ = tenancy.create_key(db, ACTOR, name="k", project="web", user="alice", **fields)  # type: ignore[arg-type]
    index = KeyIndex.load(db)
    return next(slot.entry for slot in index._slots.values() if slot.entry.id == row["id"])


def test_reserve_settle_release_bookkeeping(
    db: sqlite_utils.Database, clock: Clock, recorder: Recorder
) -> None:
    _budget(db, "project", "web", "monthly", 10 * USD)
    book = _book(db, clock, recorder)
    key = key_entry()
    a = book.reserve(key, 3 * USD)
    b = book.reserve(key, 2 * USD)
    (status,) = book.status()
    assert (status["spent_micros"], status["reserved_micros"]) == (0, 5 * USD)
    book.settle(a, 1 * USD)
    book.release(b)
    book.settle(a, 1 * USD)  # idempotent
    book.release(a)
    (status,) = book.status()
    assert (status["spent_micros"], status["reserved_micros"]) == (1 * USD, 0)
    assert status["period_start"] == "2025-01-01T00:00:00+01:00"
    assert status["resets_at"] == "2025-02-01T00:00:00+01:00"
    assert status["percent"] == 10.0 and status["enforcement"] == "hard"


def test_hard_limit_refuses_with_level_name_limit_spent_and_reset(
    db: sqlite_utils.Database, clock: Clock, recorder: Recorder
) -> None:
    _budget(db, "project", "web", "daily", 5 * USD)
    book = _book(db, clock, recorder)
    key = key_entry()
    book.settle(book.reserve(key, 4 * USD), 4 * USD)
    held = book.reserve(key, USD // 2)
    with pytest.raises(BudgetExceeded) as caught:
        book.reserve(key, USD)
    err = caught.value
    assert (err.status, err.code) == (429, "budget_exceeded")
    assert "daily budget of project 'web'" in err.message
    assert "limit 5.00 EUR, spent 4.00 EUR, 0.50 EUR held by requests in flight" in err.message
    assert "resets at 2025-01-16T00:00:00+01:00 (Europe/Berlin)" in err.message
    assert err.retry_after == 12 * 3600  # noon to local midnight
    book.release(held)
    book.reserve(key, USD)  # exactly to the limit is allowed
    assert book.status()[0]["reserved_micros"] == USD


def test_total_budget_and_key_budget_micros_never_reset(
    db: sqlite_utils.Database, clock: Clock, recorder: Recorder
) -> None:
    key = _real_key(db, budget_micros=2 * USD)
    book = _book(db, clock, recorder)
    (status,) = book.status()
    assert status["id"] == f"key:{key.id}" and status["source"] == "key"
    assert status["period"] == "total" and status["resets_at"] is None
    book.settle(book.reserve(key, 2 * USD), 2 * USD)
    clock.advance(400 * 86400)
    with pytest.raises(BudgetExceeded) as caught:
        book.reserve(key, 1)
    assert caught.value.retry_after is None
    assert "total budget and does not reset" in caught.value.message
    assert f"key {key.id!r}" in caught.value.message


def test_the_tighter_of_key_budget_and_budget_row_applies(
    db: sqlite_utils.Database, clock: Clock, recorder: Recorder
) -> None:
    key = _real_key(db, budget_micros=10 * USD)
    _budget(db, "key", key.id, "total", 3 * USD)
    book = _book(db, clock, recorder)
    assert len(book.status()) == 2
    book.reserve(key, 3 * USD)
    with pytest.raises(BudgetExceeded):
        book.reserve(key, 1)
    assert {s["reserved_micros"] for s in book.status()} == {3 * USD}  # one shared counter


@pytest.mark.parametrize(
    ("level", "target", "refused", "unaffected"),
    [
        (
            "department",
            "eng",
            key_entry("k1"),
            key_entry("k2", project="api", department="ops", user=None),
        ),
        ("project", "web", key_entry("k1"), key_entry("k2", project="api", department="ops")),
        ("user", "alice", key_entry("k1"), key_entry("k2", user="bob")),
        ("key", "KEY", None, None),
    ],
)
def test_each_level(
    db: sqlite_utils.Database,
    clock: Clock,
    recorder: Recorder,
    level: str,
    target: str,
    refused: KeyEntry | None,
    unaffected: KeyEntry | None,
) -> None:
    if level == "key":
        refused = _real_key(db)
        unaffected = key_entry("other")
        target = refused.id
    assert refused is not None and unaffected is not None
    _budget(db, level, target, "weekly", USD)
    book = _book(db, clock, recorder)
    book.settle(book.reserve(refused, USD), USD)
    with pytest.raises(BudgetExceeded) as caught:
        book.reserve(refused, 1)
    assert f"weekly budget of {level} {target!r}" in caught.value.message
    book.reserve(unaffected, 50 * USD)


@pytest.mark.parametrize(
    ("period", "last_moment", "next_period"),
    [
        ("daily", "2025-01-15T23:59:59+01:00", "2025-01-16T00:00:00+01:00"),
        ("weekly", "2025-01-19T23:59:59+01:00", "2025-01-20T00:00:00+01:00"),
        ("monthly", "2025-01-31T23:59:59+01:00", "2025-02-01T00:00:00+01:00"),
        # February in a leap year, and a year end
        ("monthly", "2024-02-29T23:59:59+01:00", "2024-03-01T00:00:00+01:00"),
        ("monthly", "2025-12-31T23:59:59+01:00", "2026-01-01T00:00:00+01:00"),
        # the day that is 23 hours long, and the one that is 25
        ("daily", "2025-03-30T23:59:59+02:00", "2025-03-31T00:00:00+02:00"),
        ("daily", "2025-10-26T23:59:59+01:00", "2025-10-27T00:00:00+01:00"),
    ],
)
def test_calendar_resets_in_the_box_time_zone(
    db: sqlite_utils.Database,
    clock: Clock,
    recorder: Recorder,
    period: str,
    last_moment: str,
    next_period: str,
) -> None:
    clock.at(last_moment)
    clock.advance(-3600)
    _budget(db, "project", "web", period, 2 * USD)
    book = _book(db, clock, recorder)
    key = key_entry()
    book.settle(book.reserve(key, 2 * USD), 2 * USD)
    clock.at(last_moment)
    with pytest.raises(BudgetExceeded) as caught:
        book.reserve(key, 1)
    assert caught.value.retry_after == 1
    assert f"resets at {next_period}" in caught.value.message
    clock.at(next_period)
    res = book.reserve(key, 2 * USD)
    (status,) = book.status()
    assert status["spent_micros"] == 0 and status["period_start"] == next_period
    book.settle(res, USD)
    assert book.status()[0]["spent_micros"] == USD


def test_a_reservation_in_flight_across_a_reset_settles_in_the_new_period(
    db: sqlite_utils.Database, clock: Clock, recorder: Recorder
) -> None:
    _budget(db, "project", "web", "daily", 10 * USD)
    book = _book(db, clock, recorder)
    key = key_entry()
    book.settle(book.reserve(key, 6 * USD), 6 * USD)
    clock.at("2025-01-15T23:59:50+01:00")
    res = book.reserve(key, 4 * USD)
    clock.at("2025-01-16T00:00:10+01:00")
    assert book.status()[0]["reserved_micros"] == 4 * USD
    book.settle(res, 3 * USD)
    (status,) = book.status()
    assert (status["spent_micros"], status["reserved_micros"]) == (3 * USD, 0)


def test_soft_budgets_alert_but_never_refuse(
    db: sqlite_utils.Database, clock: Clock, recorder: Recorder
) -> None:
    _budget(db, "department", "eng", "monthly", USD, enforcement="soft")
    book = _book(db, clock, recorder)
    key = key_entry()
    book.settle(book.reserve(key, 3 * USD), 3 * USD)
    assert book.status()[0]["percent"] == 300.0
    assert [a["details"]["threshold"] for a in recorder.alerts] == [50, 80, 100]


def test_thresholds_alert_once_per_budget_per_period(
    db: sqlite_utils.Database, clock: Clock, recorder: Recorder
) -> None:
    budget_id = _budget(db, "project", "web", "daily", 100 * USD, thresholds=[10, 50])
    book = _book(db, clock, recorder)
    key = key_entry()
    for _ in range(4):
        book.settle(book.reserve(key, 3 * USD), 3 * USD)  # 12%
    assert [a["dedup_key"] for a in recorder.alerts] == [f"budget:{budget_id}:2025-01-15:10"]
    alert = recorder.alerts[0]
    assert alert["severity"] == "info" and alert["subject"] == "project:web"
    assert (
        "project 'web' has used 12% of its daily budget (12.00 EUR of 100.00 EUR"
        in alert["message"]
    )
    book.settle(book.reserve(key, 40 * USD), 40 * USD)
    book = _book(db, clock, recorder, previous=book)  # a reload keeps what has fired
    book.settle(book.reserve(key, USD), USD)
    assert len(recorder.alerts) == 2
    clock.at("2025-01-16T09:00:00+01:00")
    book.settle(book.reserve(key, 20 * USD), 20 * USD)
    assert recorder.alerts[-1]["dedup_key"] == f"budget:{budget_id}:2025-01-16:10"


def test_overrun_is_recorded_and_then_refuses(
    db: sqlite_utils.Database, clock: Clock, recorder: Recorder
) -> None:
    _budget(db, "project", "web", "total", 10 * USD)
    book = _book(db, clock, recorder)
    key = key_entry()
    book.settle(book.reserve(key, 5 * USD), 12 * USD)  # the estimate was too low
    (status,) = book.status()
    assert status["spent_micros"] == 12 * USD and status["overrun_micros"] == 7 * USD
    with pytest.raises(BudgetExceeded):
        book.reserve(key, 0 + 1)


def test_reload_keeps_spent_and_in_flight_reservations(
    db: sqlite_utils.Database, clock: Clock, recorder: Recorder
) -> None:
    budget_id = _budget(db, "project", "web", "monthly", 10 * USD)
    book = _book(db, clock, recorder)
    key = key_entry()
    book.settle(book.reserve(key, 4 * USD), 4 * USD)
    in_flight = book.reserve(key, 5 * USD)
    store.update_budget(db, ACTOR, budget_id, {"limit_micros": 20 * USD})
    store.create_budget(
        db, ACTOR, level="user", target="alice", period="monthly", limit_micros=50 * USD
    )
    book = _book(db, clock, recorder, previous=book)
    by_level = {s["level"]: s for s in book.status()}
    assert by_level["project"]["spent_micros"] == 4 * USD  # not lost, not read twice
    assert by_level["project"]["reserved_micros"] == 5 * USD
    assert by_level["project"]["limit_micros"] == 20 * USD
    book.settle(in_flight, 3 * USD)  # reserved under the old book
    by_level = {s["level"]: s for s in book.status()}
    assert (by_level["project"]["spent_micros"], by_level["project"]["reserved_micros"]) == (
        7 * USD,
        0,
    )
    # the user budget is new: its spent came from the (empty) ledger plus the request that
    # was in flight when it was created
    assert by_level["user"]["spent_micros"] == 3 * USD


def test_start_rebuilds_spent_from_the_ledger(
    db: sqlite_utils.Database, clock: Clock, recorder: Recorder
) -> None:
    _budget(db, "project", "web", "monthly", 100 * USD)
    _budget(db, "department", "eng", "daily", 100 * USD)
    _budget(db, "user", "alice", "total", 100 * USD)
    add_usage(db, "2024-12-31T22:59:59.000Z", 1 * USD)  # Dec 31 23:59 in Berlin: last month
    add_usage(db, "2025-01-01T00:00:00.000Z", 2 * USD)  # Jan 1 01:00 in Berlin
    add_usage(db, "2025-01-14T23:00:00.000Z", 4 * USD)  # Jan 15 00:00 in Berlin: today
    add_usage(
        db,
        "2025-01-15T10:00:00.000Z",
        8 * USD,
        key_id="k2",
        project="api",
        department="ops",
        user="bob",
    )
    book = _book(db, clock, recorder)
    spent = {s["level"]: s["spent_micros"] for s in book.status()}
    assert spent == {"department": 4 * USD, "project": 6 * USD, "user": 7 * USD}


def test_thresholds_crossed_before_a_restart_are_deduplicated_by_key(
    db: sqlite_utils.Database, clock: Clock
) -> None:
    _budget(db, "project", "web", "monthly", 10 * USD)
    add_usage(db, "2025-01-10T10:00:00.000Z", 9 * USD)
    first, second = Recorder(), Recorder()
    for sink in (first, second):  # two starts of the box
        book = _book(db, clock, sink)
        book.settle(book.reserve(key_entry(), 0), 0)
    assert [a["dedup_key"] for a in first.alerts] == [a["dedup_key"] for a in second.alerts]
    assert len(first.alerts) == 2  # 50 and 80; the table's UNIQUE key keeps one of each


def test_zero_limit_admits_only_free_requests(
    db: sqlite_utils.Database, clock: Clock, recorder: Recorder
) -> None:
    _budget(db, "project", "web", "monthly", 0)
    book = _book(db, clock, recorder)
    book.settle(book.reserve(key_entry(), 0), 0)
    with pytest.raises(BudgetExceeded):
        book.reserve(key_entry(), 1)
    assert recorder.alerts == []
    assert datetime.fromtimestamp(clock(), BERLIN).day == 15
