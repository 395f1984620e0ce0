"""Requests and tokens per minute at every level; Retry-After and the x-ratelimit-* headers."""

from __future__ import annotations

import pytest
import sqlite_utils

from gateway.governance.errors import RateLimited
from gateway.governance.ratelimit import Limits, RateLimiter, headers, reset_text
from gateway.tenancy import store as tenancy
from tests.gateway.governance.conftest import ACTOR, key_entry

T0 = 1_000_000.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.02, "20ms"), (0.0001, "1ms"), (1, "1s"), (1.5, "1.5s"), (59.9, "59.9s"),
     (60, "1m0s"), (360, "6m0s"), (61.25, "1m1.25s"), (3600, "1h0m0s"), (3723, "1h2m3s")],
)  # fmt: skip
def test_reset_is_written_as_openai_does(seconds: float, text: str) -> None:
    assert reset_text(seconds) == text


def test_key_rpm_burst_then_steady_rate_with_retry_after() -> None:
    limiter = RateLimiter()
    key = key_entry(rpm=3)
    states = [limiter.check(key, 0, T0) for _ in range(3)]
    assert [headers(s)["x-ratelimit-remaining-requests"] for s in states] == ["2", "1", "0"]
    assert headers(states[-1]) == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s",
    }
    with pytest.raises(RateLimited) as caught:
        limiter.check(key, 0, T0 + 1)
    err = caught.value
    assert (err.status, err.code, err.retry_after) == (429, "rate_limited", 19)
    assert "rate limit reached for key 'key_a': 3 requests per minute" in err.message
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.headers["x-ratelimit-reset-requests"] == "59s"
    state = limiter.check(key, 0, T0 + 20)  # one slot has come back
    assert headers(state)["x-ratelimit-remaining-requests"] == "0"
    state = limiter.check(key, 0, T0 + 200)
    assert headers(state)["x-ratelimit-remaining-requests"] == "2"


def test_tokens_are_charged_at_the_estimate_and_corrected() -> None:
    limiter = RateLimiter()
    key = key_entry(tpm=1000)
    state = limiter.check(key, 800, T0)
    assert headers(state)["x-ratelimit-remaining-tokens"] == "200"
    assert headers(state)["x-ratelimit-reset-tokens"] == "48s"
    assert "x-ratelimit-limit-requests" not in headers(state)  # no request limit: no headers
    with pytest.raises(RateLimited) as caught:
        limiter.check(key, 300, T0)
    assert caught.value.retry_after == 6
    limiter.record_tokens(state, 100)  # the response used far less
    state = limiter.check(key, 300, T0)
    assert headers(state)["x-ratelimit-remaining-tokens"] == "600"


def test_a_request_larger_than_the_tpm_is_refused_without_retry_after() -> None:
    limiter = RateLimiter()
    with pytest.raises(RateLimited) as caught:
        limiter.check(key_entry(tpm=100), 101, T0)
    assert caught.value.retry_after is None
    assert "more than the 100 tokens per minute allowed for key 'key_a'" in caught.value.message
    with pytest.raises(RateLimited) as caught:
        limiter.check(key_entry(rpm=0), 1, T0)
    assert caught.value.retry_after is None and "limit is 0" in caught.value.message


def test_no_limit_no_headers() -> None:
    state = RateLimiter().check(key_entry(), 10_000, T0)
    assert headers(state) == {}


def _limits(db: sqlite_utils.Database) -> Limits:
    return Limits.load(db)


@pytest.mark.parametrize(
    ("table", "name", "other"),
    [
        ("users", "alice", key_entry("k2", user="bob")),
        ("projects", "web", key_entry("k2", project="api", department="ops")),
        ("departments", "eng", key_entry("k2", project="api", department="ops", user=None)),
    ],
)
def test_user_project_and_department_limits(
    db: sqlite_utils.Database, table: str, name: str, other: object
) -> None:
    db.execute(f"UPDATE {table} SET rpm = 2, tpm = 50 WHERE name = ?", [name])
    limiter = RateLimiter(_limits(db))
    level = table.rstrip("s")
    first, second = key_entry("k1"), key_entry("k3")  # two keys of the same owner share it
    limiter.check(first, 20, T0)
    limiter.check(second, 20, T0)
    with pytest.raises(RateLimited) as caught:
        limiter.check(first, 10, T0)
    assert f"{level} {name!r}: 2 requests per minute" in caught.value.message
    with pytest.raises(RateLimited) as caught:
        limiter.check(first, 40, T0 + 30)
    assert f"{level} {name!r}: 50 tokens per minute" in caught.value.message
    limiter.check(other, 10, T0)  # type: ignore[arg-type]


def test_headers_show_the_tightest_limit_and_a_refusal_charges_nothing(
    db: sqlite_utils.Database,
) -> None:
    tenancy.update_project(db, ACTOR, "web", {"rpm": 100, "tpm": 10_000})
    limiter = RateLimiter(_limits(db))
    key = key_entry(rpm=5, tpm=1_000_000)
    state = limiter.check(key, 100, T0)
    h = headers(state)
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("5", "4")
    assert (h["x-ratelimit-limit-tokens"], h["x-ratelimit-remaining-tokens"]) == ("10000", "9900")
    with pytest.raises(RateLimited):
        limiter.check(key, 20_000, T0)  # over the project's TPM: the key's RPM is not charged
    h = headers(limiter.check(key, 100, T0))
    assert h["x-ratelimit-remaining-requests"] == "3"
    limiter.undo(state)
    h = headers(limiter.check(key, 100, T0))
    assert h["x-ratelimit-remaining-requests"] == "3"
    assert h["x-ratelimit-remaining-tokens"] == "9800"


def test_a_changed_limit_keeps_the_used_fraction_and_idle_cells_are_dropped() -> None:
    limiter = RateLimiter()
    for _ in range(5):
        limiter.check(key_entry(rpm=10), 0, T0)
    state = limiter.check(key_entry(rpm=20), 0, T0)  # half used, then one more
    assert headers(state)["x-ratelimit-remaining-requests"] == "9"
    limiter.prune(T0 + 61)
    assert limiter._cells == {}
