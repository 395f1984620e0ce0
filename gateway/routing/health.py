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
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
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


class _State:
    """One deployment's mutable health (plain slots: it changes on every request)."""

    __slots__ = (
        "circuit",
        "consecutive",
        "cooldown_until",
        "failures",
        "latency",
        "opened_at",
        "outcomes",
        "probe_since",
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
        if not self.available(dep_id, now):
            return False
        s = self._states.get(dep_id)
        if s is None or s.circuit == CLOSED:
            return True
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
        s.push(False)

    def record_failure(
        self, dep_id: str, kind: FailureKind, retry_after: float | None, now: float
    ) -> None:
        """An attempt failed: `error` (5xx, connection, garbage), `timeout`, or
        `rate_limited` (429, with its Retry-After in seconds when it had one). A provider's
        refusal of the request itself (4xx) says nothing about health: do not record it."""
        s = self._state(dep_id)
        p = self.policy
        if kind == "rate_limited":
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
