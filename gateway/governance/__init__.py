"""Cost governance on the hot path: suspensions, rate limits, budgets, the spend breaker, alerts.

Everything a request touches is in memory, synchronous and O(levels); SQLite is read only at
`load`/`reload` and written only by the alert sink's background task.

The contract (wired by `gateway.state.Gateway` and `gateway.dispatch`):

At start, inside the running event loop::

    gov = Governance.load(db, cfg, vault)      # budgets, limits, suspensions; spent amounts and
    gov.start()                                # the breaker's baseline from the ledger; then the
                                               # alert writer and webhook delivery task
At every configuration reload (`settings.catalog_version` changed)::

    gov.reload()                               # spent amounts and reservations carry over

At shutdown::

    await gov.stop()                           # queued alerts are stored; deliveries resume later

Per request, after the key check and before the provider is called::

    admission = gov.admit(key, worst_case_micros, tokens_estimate)
        # raises Suspended (403 spend_suspended), RateLimited (429 rate_limited, Retry-After,
        # .headers with the x-ratelimit-* values) or BudgetExceeded (429 budget_exceeded,
        # Retry-After until the period resets; none for a total budget), in that order of
        # checks; a refused request leaves nothing charged or reserved.
    response.headers.update(admission.headers())   # x-ratelimit-* (see ratelimit.headers);
        # add them before the response starts (streams included); {} when no limit applies

and exactly one of, when the request is over::

    gov.complete(admission, actual_micros, actual_tokens)
        # whenever a cost is known, also for a failed or cut stream that was billed; call it
        # before the usage row is queued (so a reload in between cannot count the cost twice)
    gov.abort(admission)
        # nothing was billed (the provider refused, the connection failed, a 4xx)

Both are idempotent, so a `finally: gov.abort(admission)` after a `complete` is harmless.
`worst_case_micros` is the priced prompt plus `max_tokens` (capped by `[budgets]
reserve_output_ceiling`); `tokens_estimate` the prompt tokens plus `max_tokens`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import sqlite_utils

from appliance.config import Config
from appliance.vault import Vault
from gateway.auth import KeyEntry
from gateway.governance import _ledger, store
from gateway.governance.alerts import AlertSink
from gateway.governance.breaker import SpendBreaker
from gateway.governance.budgets import BudgetBook, Reservation
from gateway.governance.errors import BudgetExceeded, RateLimited, Suspended
from gateway.governance.ratelimit import Limits, RateLimiter, RateState, headers

__all__ = [
    "Admission",
    "AlertSink",
    "BudgetBook",
    "BudgetExceeded",
    "Governance",
    "RateLimited",
    "Suspended",
]

log = logging.getLogger(__name__)
BREAKER_ACTOR = "system:breaker"


@dataclass(slots=True)
class Admission:
    """One admitted request: its rate-limit charges and budget reservation."""

    key: KeyEntry
    rate: RateState
    reservation: Reservation
    done: bool = field(default=False)

    def headers(self, out: dict[str, str] | None = None) -> dict[str, str]:
        """The x-ratelimit-* response headers for this request (added to `out` if given)."""
        return headers(self.rate, out)


class Governance:
    """The hot path's one entry to cost governance (see the module docstring)."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        cfg: Config,
        vault: Vault | None = None,
        clock: Callable[[], float] = time.time,
        sink: AlertSink | None = None,
    ) -> None:
        self.db, self.cfg, self.clock = db, cfg, clock
        self.tz = ZoneInfo(cfg.box.timezone)
        self.sink = sink or AlertSink(
            db,
            vault,
            timeout=cfg.alerts.webhook_timeout,
            max_attempts=cfg.alerts.max_attempts,
            clock=clock,
            box=cfg.box.name,
        )
        self.rates = RateLimiter()
        self.breaker = SpendBreaker(cfg.budgets, self.sink, self._tripped, cfg.box.currency)
        self.budgets: BudgetBook | None = None
        # (level, target) → reason; `_unwritten` are the breaker's not yet in the table.
        self.suspended: dict[tuple[str, str], str] = {}
        self._unwritten: dict[tuple[str, str], str] = {}

    @classmethod
    def load(
        cls,
        db: sqlite_utils.Database,
        cfg: Config,
        vault: Vault | None = None,
        clock: Callable[[], float] = time.time,
        sink: AlertSink | None = None,
    ) -> Governance:
        """Everything from the store, spent amounts and the breaker's baseline from the ledger."""
        gov = cls(db, cfg, vault, clock, sink)
        gov.reload()
        now = clock()
        gov.breaker.seed(_ledger.spend_by_minute(db, now - gov.breaker.baseline_s), now)
        return gov

    def reload(self, db: sqlite_utils.Database | None = None) -> None:
        """Re-read budgets, limits and suspensions; spent and reserved amounts carry over."""
        db = db or self.db
        now = self.clock()
        self.budgets = BudgetBook.load(
            db,
            tz=self.tz,
            clock=self.clock,
            sink=self.sink,
            currency=self.cfg.box.currency,
            previous=self.budgets,
        )
        self.rates.set_limits(Limits.load(db), now)
        self.breaker.prune(now)
        active = {(r["level"], r["target"]): r["reason"] for r in store.active_suspensions(db)}
        for written in set(self._unwritten) & set(active):
            del self._unwritten[written]
        for level, name in set(self.suspended) - set(active) - set(self._unwritten):
            self.breaker.forgive(level, name)  # lifted by an admin
        self.suspended = {**active, **self._unwritten}

    def start(self, loop: Any = None) -> None:
        """Start the alert writer and webhook deliveries (on the running loop by default)."""
        self.sink.start(loop)

    async def stop(self) -> None:
        """Store queued alerts and stop delivering."""
        await self.sink.stop()

    # --- per request ------------------------------------------------------------------------

    def hard_budget_applies(self, key: KeyEntry) -> bool:
        """Whether a hard budget covers this key (decides the unpriced-model policy 'auto')."""
        assert self.budgets is not None, "Governance.load() or reload() first"
        return self.budgets.hard_applies(key)

    def needs_estimate(self, key: KeyEntry) -> bool:
        """Whether admitting this key's request needs its worst-case cost and token estimate
        (a budget or a tokens-per-minute limit applies); counting prompt tokens costs time,
        so a request with nothing to check skips it."""
        assert self.budgets is not None, "Governance.load() or reload() first"
        return self.budgets.applies(key) or self.rates.limits_tokens(key)

    def admit(self, key: KeyEntry, worst_case_micros: int, tokens_estimate: int) -> Admission:
        """Check suspension, rate limits and budgets, in that order; charge and reserve."""
        now = self.clock()
        if self.suspended:
            self._check_suspended(key)
        rate = self.rates.check(key, tokens_estimate, now)
        assert self.budgets is not None, "Governance.load() or reload() first"
        try:
            reservation = self.budgets.reserve(key, worst_case_micros, now)
        except BudgetExceeded:
            self.rates.undo(rate)
            raise
        return Admission(key, rate, reservation)

    def move(self, admission: Admission, worst_case_micros: int) -> None:
        """Failover to another deployment: the budget reservation follows it (released, then
        reserved at the new deployment's worst case; BudgetExceeded leaves nothing reserved).
        The rate-limit charge stays: it is still one request."""
        assert self.budgets is not None, "Governance.load() or reload() first"
        self.budgets.release(admission.reservation)
        admission.reservation = self.budgets.reserve(admission.key, worst_case_micros, self.clock())

    def complete(self, admission: Admission, actual_micros: int, actual_tokens: int) -> None:
        """Settle the reservation to the real cost and the token charge to the real count."""
        if admission.done:
            return
        admission.done = True
        now = self.clock()
        self.rates.record_tokens(admission.rate, actual_tokens)
        assert self.budgets is not None
        self.budgets.settle(admission.reservation, actual_micros, now)
        self.breaker.record(admission.key, actual_micros, now)

    def abort(self, admission: Admission) -> None:
        """Nothing was billed: release the reservation and take back the token estimate."""
        if admission.done:
            return
        admission.done = True
        self.rates.record_tokens(admission.rate, 0)
        assert self.budgets is not None
        self.budgets.release(admission.reservation)

    def _check_suspended(self, key: KeyEntry) -> None:
        for level, target in (("key", key.id), ("project", key.project)):
            reason = self.suspended.get((level, target))
            if reason is not None:
                raise Suspended(
                    f"{level} {target!r} is suspended by the spend breaker ({reason}); an "
                    "administrator must lift the suspension (aigw suspensions lift)"
                )

    # --- the breaker's suspensions ----------------------------------------------------------

    def _tripped(self, level: str, target: str, reason: str) -> None:
        """Suspend now in memory; the table row is written by the sink's background task."""
        self.suspended[level, target] = reason
        self._unwritten[level, target] = reason

        def write(db: sqlite_utils.Database) -> None:
            store.suspend(db, BREAKER_ACTOR, level, target, reason)

        self.sink.defer(write)

    def status(self) -> list[dict[str, Any]]:
        """Every budget's limit, spent, reserved and period (the admin API's view)."""
        assert self.budgets is not None
        return self.budgets.status()
