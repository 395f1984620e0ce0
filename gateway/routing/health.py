"""Per-deployment health: latency averages, a circuit breaker and rate-limit cooldowns.

The dispatcher reports each attempt's outcome; the router asks `available` while it plans.
All of it lives in memory and is per process: a restart forgets it, which is what a breaker
wants (a fresh process probes again). Time is passed in (`now`, monotonic seconds), so tests
drive it with a fake clock and the hot path reads the clock once per request.

Breaker states: *closed* (traffic flows); *open* after `consecutive_failures` failures in a
row, or when more than `error_rate` of the last `window` outcomes failed; after `cooldown_s`
it is *half-open*: `available` says yes, and the first `start` claims the single probe; the
probe's success closes it, its failure opens it again for another cooldown. A 429 is not a
failure of the deployment: it only cools it down until its Retry-After has passed.

Operators read a deployment's `status` and may `reset` it through the admin API
(`gateway.admin.health`); neither is on the request path.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

FailureKind = Literal["error", "timeout", "rate_limited"]
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a deployment's circuit opens and how long it stays open."""

    consecutive_failures: int = 5
    error_rate: float = 0.5  # opens when the failed share of a full window is above this
    window: int = 20
    cooldown_s: float = 30.0
    rate_limit_cooldown_s: float = 5.0  # a 429 without Retry-After
    max_retry_after_s: float = 300.0  # a provider cannot park a deployment for a day
    probe_timeout_s: float = 60.0  # a probe never reported (cancelled) frees the slot after this
    ewma_alpha: float = 0.3  # weight of the newest sample in the latency averages


BlockedBy = Literal["retry_after", "breaker", "probe"]


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """One deployment's health as an operator reads it (`Health.status`); a copy, not live."""

    # closed, open or half_open; an open circuit past its cooldown reads half_open (the next
    # request is the probe), though the breaker turns half-open only when a request claims it.
    state: str
    available: bool  # whether the router would send a request to it now
    probe_in_flight: bool
    retry_in_s: float  # 0 when available; else until the cooldown, breaker or probe ends
    blocked_by: BlockedBy | None  # what `retry_in_s` waits for; None when available
    consecutive_failures: int
    error_rate: float  # failed share of the outcomes in the window (0 when empty)
    window_outcomes: int  # outcomes the rate is over (a state change starts a fresh window)
    window_size: int  # the rate opens the circuit only once the window is full
    opened_at: str | None  # UTC ISO 8601, while the circuit is not closed
    last_failure_kind: FailureKind | None
    last_failure_at: str | None  # UTC ISO 8601
    ttft_ms: float | None  # moving averages; None until a success is measured
    latency_ms: float | None
    requests: int  # outcomes seen: successes + failures + rate_limited
    successes: int
    failures: int  # errors and timeouts (what the breaker counts)
    rate_limited: int  # 429s (cool-downs, not failures)


def _utc(wall: float) -> str:
    """Epoch seconds as UTC ISO 8601 with milliseconds and a Z (as the store writes times)."""
    return (
        datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _ms_up(seconds: float) -> float:
    """A wait, rounded up to the millisecond (float noise aside) and never shown as 0."""
    return max(math.ceil(round(seconds * 1000, 6)), 1) / 1000


class _State:
    """One deployment's mutable health (plain slots: it changes on every request)."""

    __slots__ = (
        "circuit",
        "consecutive",
        "cooldown_until",
        "failures",
        "last_failure_at",
        "last_failure_kind",
        "latency",
        "opened_at",
        "outcomes",
        "probe_since",
        "rate_limited",
        "successes",
        "ttft",
        "window_failures",
    )

    def __init__(self, window: int) -> None:
        self.circuit = CLOSED
        self.consecutive = 0
        self.cooldown_until = 0.0
        self.opened_at = 0.0
        self.probe_since: float | None = None
        self.outcomes: deque[bool] = deque(maxlen=window)  # True: failed
        self.window_failures = 0
        self.ttft: float | None = None
        self.latency: float | None = None
        self.successes = 0
        self.failures = 0
        # For operators only (Health.status); written on the failure path, never read there.
        self.rate_limited = 0
        self.last_failure_kind: FailureKind | None = None
        self.last_failure_at = 0.0

    def push(self, failed: bool) -> None:
        """Add an outcome to the sliding window, keeping its failure count."""
        if len(self.outcomes) == self.outcomes.maxlen and self.outcomes[0]:
            self.window_failures -= 1
        self.outcomes.append(failed)
        self.window_failures += failed

    def reset_window(self) -> None:
        """Forget the window (a state change starts a fresh one)."""
        self.outcomes.clear()
        self.window_failures = 0
        self.consecutive = 0


class Health:
    """Health of every deployment, by deployment id; unknown ids are healthy."""

    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self._states: dict[str, _State] = {}

    def _state(self, dep_id: str) -> _State:
        state = self._states.get(dep_id)
        if state is None:
            state = self._states[dep_id] = _State(self.policy.window)
        return state

    def available(self, dep_id: str, now: float) -> bool:
        """Whether a request may be sent to the deployment now (a pure question)."""
        s = self._states.get(dep_id)
        if s is None:
            return True
        if now < s.cooldown_until:
            return False
        if s.circuit == CLOSED:
            return True
        if s.circuit == OPEN:
            return now >= s.opened_at + self.policy.cooldown_s
        return s.probe_since is None or now >= s.probe_since + self.policy.probe_timeout_s

    def all_available(self, dep_ids: tuple[str, ...], now: float) -> bool:
        """Whether `available` holds for every one of them (one call for a whole pool)."""
        states = self._states
        for dep_id in dep_ids:
            s = states.get(dep_id)
            if s is None:
                continue
            if s.circuit == CLOSED:
                if now < s.cooldown_until:
                    return False
            elif not self.available(dep_id, now):
                return False
        return True

    def why_unavailable(self, dep_id: str, now: float) -> str:
        """Why `available` says no, as a reason shows it."""
        s = self._states.get(dep_id)
        if s is None:
            return "available"
        if now < s.cooldown_until:
            return f"cooling down {s.cooldown_until - now:.0f} s after 429"
        if s.circuit == OPEN:
            return "circuit open"
        if s.circuit == HALF_OPEN:
            return "circuit half-open, probe in flight"
        return "available"

    def ready_at(self, dep_id: str) -> float:
        """The earliest time the deployment may be available again (for a Retry-After)."""
        s = self._states.get(dep_id)
        if s is None:
            return 0.0
        until = s.cooldown_until
        if s.circuit == OPEN:
            until = max(until, s.opened_at + self.policy.cooldown_s)
        return until

    def start(self, dep_id: str, now: float) -> bool:
        """Claim the right to send one attempt, just before sending it. False when another
        request holds the half-open probe (or the deployment became unavailable)."""
        s = self._states.get(dep_id)
        if s is None:
            return True
        if s.circuit == CLOSED:  # what `available` says of a closed circuit, without the call
            return now >= s.cooldown_until
        if not self.available(dep_id, now):
            return False
        s.circuit = HALF_OPEN
        s.probe_since = now
        return True

    def record_success(self, dep_id: str, ttft: float | None, latency: float, now: float) -> None:
        """An attempt answered: seconds to first token (None: not streamed, the latency
        stands for it) and in all. A success closes the circuit."""
        s = self._state(dep_id)
        a = self.policy.ewma_alpha
        first = latency if ttft is None else ttft
        s.ttft = first if s.ttft is None else a * first + (1 - a) * s.ttft
        s.latency = latency if s.latency is None else a * latency + (1 - a) * s.latency
        s.successes += 1
        if s.circuit != CLOSED:
            s.circuit = CLOSED
            s.probe_since = None
            s.reset_window()
        s.consecutive = 0
        outcomes = s.outcomes  # push(False), inlined: every answered request comes here
        if len(outcomes) == outcomes.maxlen and outcomes[0]:
            s.window_failures -= 1
        outcomes.append(False)

    def record_failure(
        self, dep_id: str, kind: FailureKind, retry_after: float | None, now: float
    ) -> None:
        """An attempt failed: `error` (5xx, connection, garbage), `timeout`, or
        `rate_limited` (429, with its Retry-After in seconds when it had one). A provider's
        refusal of the request itself (4xx) says nothing about health: do not record it."""
        s = self._state(dep_id)
        p = self.policy
        s.last_failure_kind, s.last_failure_at = kind, now
        if kind == "rate_limited":
            s.rate_limited += 1
            wait = p.rate_limit_cooldown_s if retry_after is None else retry_after
            s.cooldown_until = max(s.cooldown_until, now + min(max(wait, 0.0), p.max_retry_after_s))
            if s.circuit == HALF_OPEN:
                s.probe_since = None  # the probe learned nothing; let another through later
            return
        s.failures += 1
        if s.circuit != CLOSED:
            self._open(s, now)  # the probe failed
            return
        s.consecutive += 1
        s.push(True)
        full = len(s.outcomes) == p.window
        if s.consecutive >= p.consecutive_failures or (
            full and s.window_failures / p.window > p.error_rate
        ):
            self._open(s, now)

    def _open(self, s: _State, now: float) -> None:
        s.circuit = OPEN
        s.opened_at = now
        s.probe_since = None
        s.reset_window()

    def latency(self, dep_id: str) -> float | None:
        """The moving average of time to first token, seconds (None: never measured)."""
        s = self._states.get(dep_id)
        return None if s is None else s.ttft

    def snapshot(self, now: float) -> dict[str, dict[str, Any]]:
        """Every tracked deployment's state, for a status page."""
        return {
            dep_id: {
                "circuit": s.circuit,
                "available": self.available(dep_id, now),
                "cooldown_s": max(0.0, s.cooldown_until - now),
                "consecutive_failures": s.consecutive,
                "window_error_rate": s.window_failures / len(s.outcomes) if s.outcomes else 0.0,
                "ttft_ms": None if s.ttft is None else round(s.ttft * 1000, 1),
                "latency_ms": None if s.latency is None else round(s.latency * 1000, 1),
                "successes": s.successes,
                "failures": s.failures,
            }
            for dep_id, s in self._states.items()
        }

    def status(self, dep_id: str, now: float, wall: float | None = None) -> DeploymentStatus:
        """The deployment's health at `now` (the health clock), for operators. `wall` is the
        epoch time at `now` (default: the system clock), to show when things happened in UTC.
        Reads only: an unknown deployment is reported healthy and is not added."""
        p = self.policy
        s = self._states.get(dep_id)
        if s is None:
            return DeploymentStatus(
                state=CLOSED,
                available=True,
                probe_in_flight=False,
                retry_in_s=0.0,
                blocked_by=None,
                consecutive_failures=0,
                error_rate=0.0,
                window_outcomes=0,
                window_size=p.window,
                opened_at=None,
                last_failure_kind=None,
                last_failure_at=None,
                ttft_ms=None,
                latency_ms=None,
                requests=0,
                successes=0,
                failures=0,
                rate_limited=0,
            )
        if wall is None:
            wall = time.time()
        # The same conditions as `available`, as the time each one ends (the latest decides).
        until = s.cooldown_until
        blocked: BlockedBy = "retry_after"
        state, probing = s.circuit, False
        if s.circuit == OPEN:
            reopen = s.opened_at + p.cooldown_s
            if reopen > until:
                until, blocked = reopen, "breaker"
            if now >= reopen:
                state = HALF_OPEN  # the next request is the probe
        elif s.circuit == HALF_OPEN and s.probe_since is not None:
            freed = s.probe_since + p.probe_timeout_s
            probing = now < freed
            if freed > until:
                until, blocked = freed, "probe"
        available = now >= until
        n = len(s.outcomes)
        return DeploymentStatus(
            state=state,
            available=available,
            probe_in_flight=probing,
            retry_in_s=0.0 if available else _ms_up(until - now),
            blocked_by=None if available else blocked,
            consecutive_failures=s.consecutive,
            error_rate=s.window_failures / n if n else 0.0,
            window_outcomes=n,
            window_size=p.window,
            opened_at=None if s.circuit == CLOSED else _utc(wall - (now - s.opened_at)),
            last_failure_kind=s.last_failure_kind,
            last_failure_at=(
                None if s.last_failure_kind is None else _utc(wall - (now - s.last_failure_at))
            ),
            ttft_ms=_ms(s.ttft),
            latency_ms=_ms(s.latency),
            requests=s.successes + s.failures + s.rate_limited,
            successes=s.successes,
            failures=s.failures,
            rate_limited=s.rate_limited,
        )

    def reset(self, dep_id: str) -> bool:
        """Close the deployment's circuit and end its cool-down (an operator fixed the cause);
        the averages and counts stay. False when nothing was known about it."""
        s = self._states.get(dep_id)
        if s is None:
            return False
        s.circuit = CLOSED
        s.probe_since = None
        s.cooldown_until = 0.0
        s.reset_window()
        return True
