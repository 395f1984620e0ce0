"""The spend circuit breaker: a key or project whose spend suddenly runs far above its normal
rate raises an alert and, where the policy says so, is suspended until an admin lifts it.

Per key and per project, settled costs go into per-minute buckets (the window, `[budgets]
breaker_window_minutes`) and per-hour buckets (the baseline, `breaker_baseline_hours`), with
running sums, so recording a cost is O(1) amortised and memory is bounded by the callers that
spent within the baseline. The breaker trips when the window's spend is at least
`breaker_min_micros` and its rate is more than `breaker_multiple` times the baseline's average
rate (the baseline excludes the window itself, so a spike does not raise its own bar). A caller
with no history has a baseline of zero: its first window past `breaker_min_micros` trips.
Granularity is a minute for the window and an hour for the baseline.

The baseline is rebuilt from the ledger at start (`seed`) and kept in memory from settled
costs afterwards; a trip alerts once per window (dedup key `breaker:<level>:<target>:<n>`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from appliance.config import BudgetsConfig
from gateway.auth import KeyEntry
from gateway.governance.budgets import AlertRaiser
from gateway.money import money

Target = tuple[str, str]  # ("key", id) or ("project", name)


class _Track:
    """One caller's recent spend: minute buckets for the window, hour buckets for the
    baseline, each with its running sum."""

    __slots__ = ("hour_sum", "hours", "minute_sum", "minutes", "tripped")

    def __init__(self) -> None:
        self.minutes: deque[list[float]] = deque()  # [minute start, micros]
        self.hours: deque[list[float]] = deque()
        self.minute_sum = 0
        self.hour_sum = 0
        self.tripped = -1  # the window number of the last trip

    def add(self, now: float, micros: int, window_s: float, baseline_s: float) -> None:
        """Count `micros` at `now`; buckets expire only when a new minute begins."""
        minute = now - now % 60
        self.minute_sum += micros
        self.hour_sum += micros
        if self.minutes and self.minutes[-1][0] == minute:  # the common case: O(1)
            self.minutes[-1][1] += micros
            self.hours[-1][1] += micros
            return
        self.minutes.append([minute, micros])
        hour = now - now % 3600
        if self.hours and self.hours[-1][0] == hour:
            self.hours[-1][1] += micros
        else:
            self.hours.append([hour, micros])
        self.expire(now, window_s, baseline_s)

    def expire(self, now: float, window_s: float, baseline_s: float) -> None:
        """Forget buckets that left the window (minutes) or the baseline (hours)."""
        while self.minutes and self.minutes[0][0] <= now - window_s:
            self.minute_sum -= int(self.minutes.popleft()[1])
        while self.hours and self.hours[0][0] <= now - baseline_s - 3600:
            self.hour_sum -= int(self.hours.popleft()[1])

    def forgive(self) -> None:
        """Forget the window (a lifted suspension must not trip again on the same spike); the
        spike stays in the baseline."""
        self.minutes.clear()
        self.minute_sum = 0


class SpendBreaker:
    """Window and baseline spend per key and per project, and the trip decision."""

    def __init__(
        self,
        cfg: BudgetsConfig,
        sink: AlertRaiser | None,
        on_trip: Callable[[str, str, str], None] | None = None,
        currency: str = "USD",
    ) -> None:
        self.cfg, self.sink, self.on_trip, self.currency = cfg, sink, on_trip, currency
        self.window_s = cfg.breaker_window_minutes * 60.0
        self.baseline_s = cfg.breaker_baseline_hours * 3600.0
        self._tracks: dict[Target, _Track] = {}

    def seed(self, rows: Iterable[tuple[str | None, str | None, float, int]], now: float) -> None:
        """Rebuild the buckets from the ledger's per-minute spend (no trips while seeding)."""
        for key_id, project, minute, micros in sorted(rows, key=lambda r: r[2]):
            for target in (("key", key_id), ("project", project)):
                if target[1] is not None:
                    track = self._tracks.setdefault((target[0], target[1]), _Track())
                    track.add(minute, micros, self.window_s, self.baseline_s)
        for track in self._tracks.values():
            track.expire(now, self.window_s, self.baseline_s)

    def record(self, key: KeyEntry, micros: int, now: float) -> None:
        """Add a settled cost to the key's and the project's tracks; trip where warranted."""
        if micros <= 0:
            return
        window_s, baseline_s, floor = self.window_s, self.baseline_s, self.cfg.breaker_min_micros
        for target in (("key", key.id), ("project", key.project)):
            track = self._tracks.get(target)
            if track is None:
                track = self._tracks[target] = _Track()
            minutes = track.minutes
            if minutes and minutes[-1][0] == now - now % 60:  # `add`'s common case, inlined
                track.minute_sum += micros
                track.hour_sum += micros
                minutes[-1][1] += micros
                track.hours[-1][1] += micros
            else:
                track.add(now, micros, window_s, baseline_s)
            if track.minute_sum >= floor:  # below it `_check` decides nothing: spare the call
                self._check(target, track, now)

    def forgive(self, level: str, target: str) -> None:
        """A suspension was lifted: start the window afresh for that caller."""
        track = self._tracks.get((level, target))
        if track is not None:
            track.forgive()

    def prune(self, now: float) -> None:
        """Drop callers with nothing left in their baseline (bounded memory)."""
        for target, track in list(self._tracks.items()):
            track.expire(now, self.window_s, self.baseline_s)
            if not track.hours:
                del self._tracks[target]

    def rates(self, level: str, target: str) -> tuple[int, int]:
        """(window spend, baseline spend excluding the window), for status and tests."""
        track = self._tracks.get((level, target))
        if track is None:
            return 0, 0
        return track.minute_sum, max(track.hour_sum - track.minute_sum, 0)

    def _check(self, target: Target, track: _Track, now: float) -> None:
        cfg = self.cfg
        window_spend = track.minute_sum
        if window_spend < cfg.breaker_min_micros:
            return
        number = int(now // self.window_s)
        if track.tripped == number:
            return
        base_spend = max(track.hour_sum - window_spend, 0)
        # rate(window) > multiple * rate(baseline), without dividing by a zero baseline
        base_span = self.baseline_s - self.window_s
        if window_spend * base_span <= cfg.breaker_multiple * base_spend * self.window_s:
            return
        track.tripped = number
        self._trip(target, window_spend, base_spend, base_span, number)

    def _trip(
        self, target: Target, window_spend: int, base_spend: int, base_span: float, number: int
    ) -> None:
        level, name = target
        cur, minutes = self.currency, self.cfg.breaker_window_minutes
        normal = base_spend * self.window_s / base_span if base_span > 0 else 0
        suspend = self.cfg.breaker_action == "suspend"
        message = (
            f"{level} {name!r} spent {money(window_spend, cur)} in the last {minutes} minutes, "
            f"against a normal {money(int(normal), cur)} for that time "
            f"(breaker at {self.cfg.breaker_multiple:g}x)"
        )
        if suspend:
            message += "; it is suspended until an administrator lifts the suspension"
        details: dict[str, Any] = {
            "level": level,
            "target": name,
            "window_minutes": minutes,
            "window_micros": window_spend,
            "baseline_hours": self.cfg.breaker_baseline_hours,
            "baseline_micros": base_spend,
            "multiple": self.cfg.breaker_multiple,
            "action": self.cfg.breaker_action,
        }
        if self.sink is not None:
            self.sink.raise_alert(
                "spend_breaker",
                "critical" if suspend else "warning",
                f"{level}:{name}",
                f"breaker:{level}:{name}:{number}",
                message,
                details,
            )
        if suspend and self.on_trip is not None:
            self.on_trip(level, name, message)
