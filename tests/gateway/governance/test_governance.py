"""The façade the hot path calls: the order of checks, nothing left behind by a refusal, the
spend breaker's alert and suspension until an admin lifts it, a restart from the ledger."""

from __future__ import annotations

import pytest
import sqlite_utils

from appliance.config import Config, parse_config
from gateway.governance import Governance, store
from gateway.governance.errors import BudgetExceeded, RateLimited, Suspended
from gateway.governance.periods import utc_iso
from tests.gateway.governance.conftest import ACTOR, Clock, add_usage, key_entry

USD = 1_000_000


def _config(**budgets: object) -> Config:
    return parse_config(
        {"box": {"timezone": "Europe/Berlin", "currency": "EUR"}, "budgets": budgets}
    )


def _gov(db: sqlite_utils.Database, clock: Clock, cfg: Config | None = None) -> Governance:
    return Governance.load(db, cfg or _config(), clock=clock)


def _queued(gov: Governance) -> list[str]:
    return [a.dedup_key for a in gov.sink._queue if hasattr(a, "dedup_key")]


def test_admit_complete_abort_and_headers(db: sqlite_utils.Database, clock: Clock) -> None:
    store.create_budget(
        db, ACTOR, level="project", target="web", period="daily", limit_micros=10 * USD
    )
    gov = _gov(db, clock)
    key = key_entry(rpm=10, tpm=10_000)
    a = gov.admit(key, 4 * USD, 1000)
    assert a.headers()["x-ratelimit-remaining-requests"] == "9"
    assert a.headers()["x-ratelimit-remaining-tokens"] == "9000"
    b = gov.admit(key, 4 * USD, 1000)
    gov.complete(a, 1 * USD, 200)
    gov.complete(a, 1 * USD, 200)  # idempotent
    gov.abort(b)
    gov.abort(a)  # after complete: nothing happens
    (status,) = gov.status()
    assert (status["spent_micros"], status["reserved_micros"]) == (USD, 0)
    c = gov.admit(key, 9 * USD, 100)
    assert c.headers()["x-ratelimit-remaining-tokens"] == str(10_000 - 200 - 100)
    gov.abort(c)


def test_a_budget_refusal_leaves_no_rate_charge(db: sqlite_utils.Database, clock: Clock) -> None:
    store.create_budget(db, ACTOR, level="project", target="web", period="daily", limit_micros=USD)
    gov = _gov(db, clock)
    key = key_entry(rpm=2, tpm=100)
    for _ in range(5):
        with pytest.raises(BudgetExceeded):
            gov.admit(key, 2 * USD, 60)
    admitted = gov.admit(key, USD, 60)
    assert admitted.headers()["x-ratelimit-remaining-requests"] == "1"
    assert admitted.headers()["x-ratelimit-remaining-tokens"] == "40"


def test_rate_limits_are_checked_before_budgets(db: sqlite_utils.Database, clock: Clock) -> None:
    store.create_budget(db, ACTOR, level="project", target="web", period="daily", limit_micros=USD)
    gov = _gov(db, clock)
    key = key_entry(rpm=1)
    gov.admit(key, USD, 0)
    with pytest.raises(RateLimited):
        gov.admit(key, USD, 0)  # also over budget, but the rate limit answers first
    assert gov.status()[0]["reserved_micros"] == USD


def test_reload_picks_up_limits_and_budgets(db: sqlite_utils.Database, clock: Clock) -> None:
    from gateway.tenancy import store as tenancy

    gov = _gov(db, clock)
    key = key_entry()
    gov.complete(gov.admit(key, USD, 10), USD, 10)
    tenancy.update_department(db, ACTOR, "eng", {"rpm": 1})
    store.create_budget(db, ACTOR, level="user", target="alice", period="monthly", limit_micros=USD)
    gov.reload()
    held = gov.admit(key, USD, 0)
    with pytest.raises(RateLimited) as caught:
        gov.admit(key, 1, 0)
    assert "department 'eng': 1 requests per minute" in caught.value.message
    clock.advance(60)
    with pytest.raises(BudgetExceeded):
        gov.admit(key, 1, 0)
    assert gov.status()[0]["reserved_micros"] == USD
    gov.abort(held)
    gov.admit(key, 1, 0)  # the budget refusal did not use up the minute's one request


def test_restart_keeps_spent_amounts(db: sqlite_utils.Database, clock: Clock) -> None:
    store.create_budget(
        db, ACTOR, level="project", target="web", period="daily", limit_micros=5 * USD
    )
    add_usage(db, "2025-01-15T09:00:00.000Z", 3 * USD)
    gov = _gov(db, clock)
    assert gov.status()[0]["spent_micros"] == 3 * USD
    with pytest.raises(BudgetExceeded):
        gov.admit(key_entry(), 3 * USD, 0)


def _spike(gov: Governance, clock: Clock, key_id: str = "key_a", n: int = 5) -> None:
    for _ in range(n):
        clock.advance(30)
        gov.complete(gov.admit(key_entry(key_id), USD, 0), USD, 0)


def test_breaker_alerts_once_per_window(db: sqlite_utils.Database, clock: Clock) -> None:
    for hour in range(1, 24):  # a steady 0.10 EUR an hour for the last day
        add_usage(db, utc_iso(clock() - hour * 3600), USD // 10)
    gov = _gov(db, clock, _config(breaker_multiple=10.0, breaker_min_micros=2 * USD))
    window, baseline = gov.breaker.rates("key", "key_a")
    assert window == 0 and baseline == 23 * USD // 10
    gov.complete(gov.admit(key_entry(), USD, 0), USD, 0)
    assert _queued(gov) == []  # under breaker_min_micros
    _spike(gov, clock, n=3)
    keys = _queued(gov)
    assert len(keys) == 2 and keys[0].startswith("breaker:key:key_a:")
    assert keys[1].startswith("breaker:project:web:")
    _spike(gov, clock, n=2)
    assert len(_queued(gov)) == 2  # one alert per window
    gov.admit(key_entry(), USD, 0)  # action "alert": nothing is suspended


async def test_breaker_suspends_until_an_admin_lifts_it(
    db: sqlite_utils.Database, clock: Clock
) -> None:
    cfg = _config(breaker_min_micros=2 * USD, breaker_action="suspend")
    gov = _gov(db, clock, cfg)
    gov.start()
    _spike(gov, clock, n=2)
    with pytest.raises(Suspended) as caught:
        gov.admit(key_entry(), 0, 0)
    err = caught.value
    assert (err.status, err.code) == (403, "spend_suspended")
    assert "key 'key_a' is suspended by the spend breaker" in err.message
    assert "an administrator must lift the suspension" in err.message
    with pytest.raises(Suspended):  # the project's other keys too
        gov.admit(key_entry("key_b"), 0, 0)
    gov.admit(key_entry("key_c", project="api", department="ops"), 0, 0)
    await gov.sink.settle()
    gov.reload()  # the row is in the table now; a reload keeps the suspension
    with pytest.raises(Suspended):
        gov.admit(key_entry(), 0, 0)
    rows = store.list_suspensions(db, active=True)
    assert sorted((r["level"], r["target"]) for r in rows) == [("key", "key_a"), ("project", "web")]
    alerts = store.list_alerts(db, kind="spend_breaker")
    assert {a["severity"] for a in alerts} == {"critical"} and len(alerts) == 2
    for row in rows:
        store.lift_suspension(db, ACTOR, row["id"])
    gov.reload()
    gov.complete(gov.admit(key_entry(), USD, 0), USD, 0)  # spending again does not re-trip
    assert store.list_suspensions(db, active=True) == []
    await gov.stop()
