"""Budgets: reserve the worst case before a request is sent, settle to the real cost after.

A budget is a limit on what one department, project, user or key may spend per period (daily,
weekly, monthly on the box's calendar, or in total). What a (level, target, period) has spent
and holds reserved lives in one `_Counter`; every budget on it reads that counter. A hard
budget refuses a request when `spent + reserved + worst case > limit`, so however many requests
run at once, settled spend cannot pass the limit as long as each request's actual cost stays
within its reservation. A cost above the reservation (an estimate that was too low) is still
recorded, as spent and as `overrun`, because the ledger must be right; the next requests then
find the budget full.

A key's own `budget_micros` (the keys table) is a hard total budget of level `key` named
`key:<id>`; it shares its counter with a budgets-table row for the same key and period, so the
tighter of the two applies.

Counters carry over a reload (every admin change reloads the book): the new book reuses the
old counter objects, so nothing is lost or counted twice, and a reservation made under the old
book settles into the very counters it reserved. Counters that are new to the book (a budget
just created) start from the ledger. Every reserve/settle/release is one short critical section
under a lock, so the guarantee holds for threads as well as for asyncio tasks.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import orjson
import sqlite_utils

from gateway.auth import KeyEntry
from gateway.governance import _ledger
from gateway.governance.errors import BudgetExceeded
from gateway.governance.periods import FOREVER, local_iso, window
from gateway.money import money

LEVELS = ("department", "project", "user", "key")
DEFAULT_THRESHOLDS = (50, 80, 100)
Clock = Callable[[], float]
CounterKey = tuple[str, str, str]  # level, target, period
SpentFn = Callable[[sqlite_utils.Database, float], dict[tuple[str, str], int]]


class AlertRaiser(Protocol):
    """Where threshold alerts go (the `AlertSink`); must be cheap and never block."""

    def raise_alert(
        self,
        kind: str,
        severity: str,
        subject: str,
        dedup_key: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> bool: ...


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget rule as configured."""

    id: str
    level: str
    target: str
    period: str
    limit_micros: int
    hard: bool = True
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    # The counter this budget reads; computed once (read several times per request).
    counter_key: CounterKey = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counter_key", (self.level, self.target, self.period))


class _Counter:
    """Spent and reserved micro-units of one (level, target, period), in the current period."""

    __slots__ = (
        "created",
        "end",
        "fired",
        "level",
        "overrun",
        "period",
        "reserved",
        "spent",
        "start",
        "target",
        "watch",
    )

    def __init__(self, key: CounterKey, tz: ZoneInfo, now: float, spent: int) -> None:
        self.level, self.target, self.period = key
        self.start, self.end = window(self.period, tz, now)
        self.spent = spent
        self.reserved = 0
        self.overrun = 0
        self.created = now
        # Thresholds already alerted in this period, per budget id.
        self.fired: dict[str, set[int]] = {}
        # budget id → (that budget, the spend at which its next threshold fires): the fast path
        self.watch: dict[str, tuple[Budget, float]] = {}

    def roll(self, now: float, tz: ZoneInfo) -> None:
        """Start the new period once the clock has passed the end of this one. Reservations
        in flight stay: their cost lands in the period in which they settle, as in the ledger."""
        if now >= self.end:
            self.start, self.end = window(self.period, tz, now)
            self.spent = self.overrun = 0
            self.fired.clear()
            self.watch.clear()


@dataclass(slots=True)
class Reservation:
    """What one request holds: `amount` on each of `counters`, until settled or released."""

    key: KeyEntry
    amount: int
    counters: tuple[_Counter, ...]
    at: float
    budgets: tuple[Budget, ...] = ()
    book: BudgetBook | None = None
    done: bool = field(default=False)


def _severity(threshold: int) -> str:
    return "critical" if threshold >= 100 else "warning" if threshold >= 80 else "info"


_Plan = tuple[
    tuple[Budget, ...], tuple[tuple[Budget, "_Counter"], ...], tuple["_Counter", ...], KeyEntry
]


class BudgetBook:
    """Every budget in memory, with the counters they read; built by `load`."""

    def __init__(
        self,
        budgets: Iterable[Budget],
        counters: dict[CounterKey, _Counter],
        *,
        tz: ZoneInfo,
        clock: Clock,
        sink: AlertRaiser | None,
        currency: str = "USD",
        lock: threading.Lock | None = None,
    ) -> None:
        self.tz, self.clock, self.sink, self.currency = tz, clock, sink, currency
        self._lock = lock or threading.Lock()
        self._counters = counters
        self.budgets = sorted(budgets, key=lambda b: (LEVELS.index(b.level), b.target, b.id))
        by_target: dict[tuple[str, str], list[Budget]] = {}
        for b in self.budgets:
            by_target.setdefault((b.level, b.target), []).append(b)
        self._by_target = {k: tuple(v) for k, v in by_target.items()}
        # key id → (its budgets, their hard ones with counters, its distinct counters): what a
        # request of that key touches, worked out once per book (a book lives until a reload).
        self._plans: dict[str, _Plan] = {}

    @classmethod
    def load(
        cls,
        db: sqlite_utils.Database,
        *,
        tz: ZoneInfo,
        clock: Clock,
        sink: AlertRaiser | None = None,
        currency: str = "USD",
        previous: BudgetBook | None = None,
        spent_since: SpentFn = _ledger.spent_since,
    ) -> BudgetBook:
        """The budgets table plus every key's `budget_micros`; counters from `previous` where it
        has them, else from the ledger (`spent_since`, swappable for the ledger's own query)."""
        budgets = read_budgets(db)
        now = clock()
        old = previous._counters if previous is not None else {}
        counters: dict[CounterKey, _Counter] = {}
        missing = [b.counter_key for b in budgets if b.counter_key not in old]
        sums: dict[str, dict[tuple[str, str], int]] = {}
        for period in {k[2] for k in missing}:
            sums[period] = spent_since(db, window(period, tz, now)[0])
        for b in budgets:
            key = b.counter_key
            if key in counters:
                continue
            if key in old:
                counters[key] = old[key]
            else:
                spent = sums[b.period].get((b.level, b.target), 0)
                counters[key] = _Counter(key, tz, now, spent)
        lock = previous._lock if previous is not None else None
        return cls(budgets, counters, tz=tz, clock=clock, sink=sink, currency=currency, lock=lock)

    # --- the hot path ---------------------------------------------------------------------

    def _applicable(self, key: KeyEntry) -> tuple[Budget, ...]:
        by = self._by_target
        if not by:
            return ()
        found = by.get(("department", key.department), ()) + by.get(("project", key.project), ())
        if key.user is not None:
            found += by.get(("user", key.user), ())
        return found + by.get(("key", key.id), ())

    def _plan(self, key: KeyEntry) -> _Plan:
        plan = self._plans.get(key.id)
        if plan is None or plan[3] is not key:
            budgets = self._applicable(key)
            counters = self._counters
            hard = tuple((b, counters[b.counter_key]) for b in budgets if b.hard)
            read = (counters[b.counter_key] for b in budgets)
            distinct = tuple({id(c): c for c in read}.values())
            plan = self._plans[key.id] = (budgets, hard, distinct, key)
        return plan

    def applies(self, key: KeyEntry) -> bool:
        """Whether any budget covers this key."""
        return bool(self._plan(key)[0])

    def hard_applies(self, key: KeyEntry) -> bool:
        """Whether a hard budget covers this key."""
        return bool(self._plan(key)[1])

    def reserve(self, key: KeyEntry, amount_micros: int, now: float | None = None) -> Reservation:
        """Hold `amount_micros` on every budget of the key, or raise BudgetExceeded (nothing
        held) when a hard one has no room for it."""
        if amount_micros < 0:
            raise ValueError("a reservation cannot be negative")
        now = self.clock() if now is None else now
        budgets, hard, held, _ = self._plan(key)
        if not budgets:
            return Reservation(key, amount_micros, (), now)
        with self._lock:
            for c in held:
                if now >= c.end:
                    c.roll(now, self.tz)
            for b, c in hard:
                if c.spent + c.reserved + amount_micros > b.limit_micros:
                    raise self._exceeded(b, c, amount_micros, now)
            for c in held:
                c.reserved += amount_micros
        return Reservation(key, amount_micros, held, now, budgets, self)

    def settle(self, res: Reservation, actual_micros: int, now: float | None = None) -> None:
        """Replace the reservation by the actual cost (which may exceed it: recorded as an
        overrun) and raise the threshold alerts that crossing it calls for. Idempotent."""
        if res.done:
            return
        now = self.clock() if now is None else now
        same_book = res.book is self
        budgets = res.budgets if same_book else self._applicable(res.key)
        if not budgets and not res.counters:
            res.done = True
            return
        alerts: list[tuple[Budget, _Counter, int]] = []
        amount = res.amount
        over = actual_micros - amount if actual_micros > amount else 0
        counters = self._counters
        with self._lock:
            res.done = True
            for c in res.counters:
                c.reserved -= amount
                if now >= c.end:
                    c.roll(now, self.tz)
                c.spent += actual_micros
                if over:
                    c.overrun += over
            held = {id(c) for c in res.counters} if not same_book else None
            for b in budgets:
                c = counters[b.counter_key]
                # A counter created (from the ledger) after this request began has not seen
                # its cost and never will: the row is not committed yet.
                if held is not None and id(c) not in held and c.created >= res.at:
                    held.add(id(c))
                    c.roll(now, self.tz)
                    c.spent += actual_micros
                watched = c.watch.get(b.id)
                if watched is not None and watched[0] is b and c.spent < watched[1]:
                    continue  # no threshold within reach: `_crossed` without the call
                alerts.extend(self._crossed(b, c))
        for b, c, threshold in alerts:
            self._alert(b, c, threshold)

    def release(self, res: Reservation) -> None:
        """Give a reservation back untouched (the request failed before it cost anything)."""
        if res.done:
            return
        with self._lock:
            res.done = True
            for c in res.counters:
                c.reserved -= res.amount

    # --- thresholds and refusals ------------------------------------------------------------

    def _crossed(self, b: Budget, c: _Counter) -> list[tuple[Budget, _Counter, int]]:
        """Thresholds of `b` newly crossed in this period (marked as fired; under the lock)."""
        watched = c.watch.get(b.id)
        if watched is not None and watched[0] is b and c.spent < watched[1]:
            return []
        if c.spent <= 0 or not b.thresholds:
            return []
        fired = c.fired.setdefault(b.id, set())
        out = []
        for t in b.thresholds:
            if t not in fired and c.spent * 100 >= t * b.limit_micros:
                fired.add(t)
                out.append((b, c, t))
        # spent * 100 >= t * limit  <=>  spent >= ceil(t * limit / 100)
        pending = [-(-t * b.limit_micros // 100) for t in b.thresholds if t not in fired]
        c.watch[b.id] = (b, min(pending) if pending else math.inf)
        return out

    def _alert(self, b: Budget, c: _Counter, threshold: int) -> None:
        if self.sink is None:
            return
        period_key = "total" if b.period == "total" else local_iso(c.start, self.tz)[:10]
        pct = c.spent * 100 // b.limit_micros if b.limit_micros else 100
        cur = self.currency
        self.sink.raise_alert(
            "budget_threshold",
            _severity(threshold),
            f"{b.level}:{b.target}",
            f"budget:{b.id}:{period_key}:{threshold}",
            f"{b.level} {b.target!r} has used {pct}% of its {b.period} budget "
            f"({money(c.spent, cur)} of {money(b.limit_micros, cur)}; threshold {threshold}%)",
            {**self._describe(b, c), "threshold": threshold},
        )

    def _exceeded(self, b: Budget, c: _Counter, amount: int, now: float) -> BudgetExceeded:
        cur = self.currency
        text = (
            f"the {b.period} budget of {b.level} {b.target!r} does not allow this request: "
            f"limit {money(b.limit_micros, cur)}, spent {money(c.spent, cur)}"
        )
        if c.reserved:
            text += f", {money(c.reserved, cur)} held by requests in flight"
        text += f"; this request may cost up to {money(amount, cur)}"
        if c.end == FOREVER:
            return BudgetExceeded(
                text + "; it is a total budget and does not reset: ask an administrator "
                "to raise it",
                retry_after=None,
            )
        return BudgetExceeded(
            text + f"; it resets at {local_iso(c.end, self.tz)} ({self.tz.key})",
            retry_after=max(1, math.ceil(c.end - now)),
        )

    # --- the admin view -------------------------------------------------------------------

    def _describe(self, b: Budget, c: _Counter) -> dict[str, Any]:
        periodic = c.end != FOREVER
        return {
            "id": b.id,
            "level": b.level,
            "target": b.target,
            "period": b.period,
            "limit_micros": b.limit_micros,
            "enforcement": "hard" if b.hard else "soft",
            "spent_micros": c.spent,
            "period_start": local_iso(c.start, self.tz) if periodic else None,
            "resets_at": local_iso(c.end, self.tz) if periodic else None,
        }

    def status(self, now: float | None = None) -> list[dict[str, Any]]:
        """Each budget: its limit, spent, reserved, overrun, percent and period."""
        now = self.clock() if now is None else now
        out = []
        with self._lock:
            for b in self.budgets:
                c = self._counters[b.counter_key]
                c.roll(now, self.tz)
                pct = round(c.spent * 100 / b.limit_micros, 1) if b.limit_micros else None
                out.append(
                    {
                        **self._describe(b, c),
                        "thresholds": list(b.thresholds),
                        "reserved_micros": c.reserved,
                        "overrun_micros": c.overrun,
                        "percent": pct,
                        "source": "key" if b.id.startswith("key:") else "budget",
                    }
                )
        return out


def read_budgets(db: sqlite_utils.Database) -> list[Budget]:
    """The budgets table and the keys' own `budget_micros` as budget rules."""
    out = [
        Budget(
            r["id"],
            r["level"],
            r["target"],
            r["period"],
            int(r["limit_micros"]),
            bool(r["hard"]),
            tuple(sorted(int(t) for t in orjson.loads(r["thresholds"] or "[]"))),
        )
        for r in db.query("SELECT * FROM budgets")
    ]
    for r in db.query(
        "SELECT id, budget_micros FROM keys WHERE budget_micros IS NOT NULL AND status != 'revoked'"
    ):
        out.append(Budget(f"key:{r['id']}", "key", r["id"], "total", int(r["budget_micros"])))
    return out
