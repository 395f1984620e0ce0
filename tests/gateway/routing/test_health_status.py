"""`Health.status` (what operators see) and `Health.reset`, driven with an explicit clock."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from gateway.routing import Health
from gateway.routing.health import BreakerPolicy, DeploymentStatus

WALL = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the wall clock when the health clock reads 0
POLICY = BreakerPolicy(consecutive_failures=3, window=4, cooldown_s=10, probe_timeout_s=60)


def _at(h: Health, now: float) -> DeploymentStatus:
    s = h.status("d", now, WALL + now)
    # The status agrees with what the router asks, and `retry_in_s` is when that changes.
    assert s.available == h.available("d", now) == (s.retry_in_s == 0)
    assert (s.blocked_by is None) == s.available
    return s


def test_an_unseen_deployment_is_healthy_and_stays_untracked() -> None:
    h = Health(POLICY)
    s = _at(h, 5.0)
    assert (s.state, s.requests, s.window_size, s.ttft_ms, s.last_failure_at) == (
        "closed",
        0,
        4,
        None,
        None,
    )
    assert h.snapshot(5.0) == {}  # a read adds nothing
    assert not h.reset("d") and h.snapshot(5.0) == {}


def test_status_through_failures_open_cooldown_probe_and_close() -> None:
    h = Health(POLICY)
    h.record_success("d", 0.2, 0.5, 1.0)
    h.record_failure("d", "error", None, 2.0)
    h.record_failure("d", "timeout", None, 3.0)
    s = _at(h, 3.0)
    assert (s.state, s.consecutive_failures, s.window_outcomes) == ("closed", 2, 3)
    assert s.error_rate == 2 / 3
    assert (s.last_failure_kind, s.last_failure_at) == ("timeout", "2026-01-01T00:00:03.000Z")
    assert (s.ttft_ms, s.latency_ms) == (200.0, 500.0)

    h.record_failure("d", "error", None, 4.0)  # the third in a row opens the circuit
    s = _at(h, 5.0)
    assert (s.state, s.available, s.blocked_by, s.retry_in_s) == ("open", False, "breaker", 9.0)
    assert s.opened_at == "2026-01-01T00:00:04.000Z"
    assert (s.consecutive_failures, s.window_outcomes) == (0, 0)  # a fresh window
    assert (s.requests, s.successes, s.failures) == (4, 1, 3)

    s = _at(h, 14.0)  # the cooldown is over: the next request probes
    assert (s.state, s.available, s.probe_in_flight) == ("half_open", True, False)
    assert h.start("d", 14.0)
    s = _at(h, 15.0)
    assert (s.state, s.probe_in_flight, s.blocked_by, s.retry_in_s) == (
        "half_open",
        True,
        "probe",
        59.0,
    )

    h.record_success("d", 0.1, 0.3, 15.0)  # the probe answered: closed
    s = _at(h, 15.0)
    assert (s.state, s.opened_at, s.probe_in_flight) == ("closed", None, False)
    assert (s.ttft_ms, s.latency_ms) == (170.0, 440.0)  # 0.3 of the newest sample
    assert (s.requests, s.successes, s.failures, s.last_failure_kind) == (5, 2, 3, "error")


def test_a_failed_probe_reopens() -> None:
    h = Health(POLICY)
    for t in (0.0, 1.0, 2.0):
        h.record_failure("d", "error", None, t)
    assert h.start("d", 12.0)
    h.record_failure("d", "timeout", None, 13.0)
    s = _at(h, 13.0)
    assert (s.state, s.retry_in_s, s.opened_at) == ("open", 10.0, "2026-01-01T00:00:13.000Z")


def test_a_429_cools_down_without_counting_as_a_failure() -> None:
    h = Health(POLICY)
    h.record_failure("d", "rate_limited", 30, 100.0)
    s = _at(h, 110.0)
    assert (s.state, s.blocked_by, s.retry_in_s) == ("closed", "retry_after", 20.0)
    assert (s.requests, s.rate_limited, s.failures, s.consecutive_failures) == (1, 1, 0, 0)
    assert s.last_failure_kind == "rate_limited"
    assert _at(h, 130.0).available

    # Open and cooling down at once: the later of the two decides.
    for t in (131.0, 132.0, 133.0):
        h.record_failure("d", "error", None, t)
    h.record_failure("d", "rate_limited", 60, 134.0)
    s = _at(h, 135.0)
    assert (s.state, s.blocked_by, s.retry_in_s) == ("open", "retry_after", 59.0)


def test_reset_closes_and_ends_the_cooldown_but_keeps_history() -> None:
    h = Health(POLICY)
    h.record_success("d", None, 0.4, 0.0)
    for t in (1.0, 2.0, 3.0):
        h.record_failure("d", "error", None, t)
    h.record_failure("d", "rate_limited", 120, 4.0)
    before = _at(h, 5.0)
    assert not before.available
    assert h.reset("d")
    after = _at(h, 5.0)
    assert (after.state, after.available, after.opened_at) == ("closed", True, None)
    # Only the breaker and the cooldown changed: history and averages stay.
    assert after == replace(
        before,
        state="closed",
        available=True,
        retry_in_s=0.0,
        blocked_by=None,
        opened_at=None,
    )
    h.record_failure("d", "error", None, 6.0)  # counts afresh
    assert _at(h, 6.0).consecutive_failures == 1


_OP = st.sampled_from(["success", "error", "timeout", "rate_limited", "start", "reset"])


@given(st.lists(st.tuples(_OP, st.floats(0, 40), st.floats(0, 200)), max_size=40))
def test_status_matches_available_at_every_step(
    ops: list[tuple[str, float, float]],
) -> None:
    h = Health(POLICY)
    now = 0.0
    for op, dt, retry_after in ops:
        now += dt
        if op == "success":
            h.record_success("d", None, 0.1, now)
        elif op == "start":
            h.start("d", now)
        elif op == "reset":
            h.reset("d")
        else:
            h.record_failure("d", op, retry_after, now)  # type: ignore[arg-type]
        s = _at(h, now)
        assert s.state in ("closed", "open", "half_open")
        assert 0.0 <= s.error_rate <= 1.0 and s.window_outcomes <= POLICY.window
        if not s.available:
            # Free again once retry_in_s has passed (rounded up to the millisecond), not before.
            assert h.available("d", now + s.retry_in_s + 1e-6)
            assert not h.available("d", now + s.retry_in_s - 0.001 - 1e-6)
