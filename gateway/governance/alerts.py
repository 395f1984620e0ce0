"""Alerts: raised on the hot path in memory, stored and delivered by a background task.

`raise_alert` costs a set lookup and a deque append: the hot path never waits for SQLite or a
webhook. Its dedup key names the event (`budget:<id>:<period>:<threshold>`,
`breaker:<level>:<target>:<window>`): a key seen recently is dropped at once, and the table's
UNIQUE dedup_key (INSERT OR IGNORE) drops it across restarts, so each event is stored and
delivered once. The background task writes new alerts, then delivers each to every enabled
webhook, each delivery on a task of its own with exponential backoff and jitter up to
`[alerts] max_attempts`, tracked in `alert_deliveries`; deliveries still pending when the
gateway stops resume at the next start.

The same task runs other rare writes the hot path must not make itself (`defer`), such as a
suspension written by the spend breaker. SQLite work happens on the event loop in short
statements (one alert, a few rows), never while waiting on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import sqlite_utils

from appliance.store import transaction
from appliance.vault import Vault
from gateway.governance import webhooks
from gateway.governance.webhooks import DeliveryError

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "critical")
RECENT_KEYS = 10_000
RETRY_SECONDS = 1.0
Job = Callable[[sqlite_utils.Database], None]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as raised, before it is stored."""

    ts: float
    kind: str
    severity: str
    subject: str
    dedup_key: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def public(row: dict[str, Any]) -> dict[str, Any]:
    """An alerts-table row as the API and webhooks show it (details parsed)."""
    return {**row, "details": orjson.loads(row["details"]) if row.get("details") else {}}


class AlertSink:
    """The alert queue, its dedup memory, and the task that stores and delivers alerts."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        vault: Vault | None = None,
        *,
        timeout: float = 5.0,
        max_attempts: int = 6,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        clock: Callable[[], float] = time.time,
        box: str = "aigw",
    ) -> None:
        self.db, self.vault, self.box = db, vault, box
        self.timeout, self.max_attempts = timeout, max_attempts
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.clock = clock
        self._queue: deque[Alert | Job] = deque()
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    # --- the hot path -----------------------------------------------------------------------

    def seen(self, dedup_key: str) -> bool:
        """Whether an alert with this dedup key was raised lately (skip building it again)."""
        return dedup_key in self._recent

    def raise_alert(
        self,
        kind: str,
        severity: str,
        subject: str,
        dedup_key: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> bool:
        """Queue an alert unless its dedup key was seen; True when queued. Never blocks."""
        if severity not in SEVERITIES:
            raise ValueError(f"unknown alert severity {severity!r}")
        if dedup_key in self._recent:
            return False
        self._recent[dedup_key] = None
        if len(self._recent) > RECENT_KEYS:
            self._recent.popitem(last=False)
        alert = Alert(self.clock(), kind, severity, subject, dedup_key, message, details or {})
        self._queue.append(alert)
        self._kick()
        return True

    def defer(self, job: Job) -> None:
        """Run `job(db)` on the background task (a rare write the hot path must not make)."""
        self._queue.append(job)
        self._kick()

    def _kick(self) -> None:
        if self._wake is None or self._loop is None:
            return
        try:
            same = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            same = False
        if same:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    # --- the background task ----------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start storing and delivering on `loop` (default: the running one)."""
        self._loop = loop or asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._wake.set()  # alerts raised before the start are waiting
        self._resume_pending()
        self._task = self._loop.create_task(self._run(), name="aigw-alerts")

    async def stop(self) -> None:
        """Store what is queued, stop delivering (pending deliveries resume at next start)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        self._drain(deliver=False)
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._wake = None

    async def settle(self) -> None:
        """Store everything queued and wait until every delivery in flight has finished
        (delivered or given up): for tests and for an orderly shutdown."""
        self._drain()
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._drain():
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()

    def _drain(self, deliver: bool = True) -> bool:
        """Store queued alerts and run queued jobs; False when the store failed (retry)."""
        while self._queue:
            item = self._queue[0]
            try:
                if isinstance(item, Alert):
                    self._store(item, deliver)
                else:
                    item(self.db)
            except sqlite3.Error as exc:
                log.warning("alerts: cannot write to the store (%s); retrying", exc)
                return False
            except Exception:
                log.exception("alerts: a deferred job failed")
            self._queue.popleft()
        return True

    def _store(self, alert: Alert, deliver: bool) -> None:
        db = self.db
        with transaction(db):
            cur = db.execute(
                "INSERT OR IGNORE INTO alerts (ts, kind, severity, subject, dedup_key, message, "
                "details) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    _iso(alert.ts),
                    alert.kind,
                    alert.severity,
                    alert.subject,
                    alert.dedup_key,
                    alert.message,
                    orjson.dumps(alert.details).decode(),
                ],
            )
            if cur.rowcount != 1:
                return  # seen before this process started
            alert_id = cur.lastrowid
            hooks = webhooks.list_webhooks(db, enabled_only=True)
            for hook in hooks:
                db.execute(
                    "INSERT INTO alert_deliveries (alert_id, webhook_id, attempts, status) "
                    "VALUES (?, ?, 0, 'pending')",
                    [alert_id, hook["id"]],
                )
        log.info("alert %s [%s] %s: %s", alert_id, alert.severity, alert.kind, alert.message)
        if deliver and hooks and self._loop is not None:
            row = public(next(iter(db.query("SELECT * FROM alerts WHERE id = ?", [alert_id]))))
            for hook in hooks:
                self._spawn(row, hook, 0)

    def _resume_pending(self) -> None:
        rows = list(
            self.db.query(
                "SELECT d.webhook_id, d.attempts, a.* FROM alert_deliveries d "
                "JOIN alerts a ON a.id = d.alert_id WHERE d.status = 'pending'"
            )
        )
        for r in rows:
            hook_id, attempts = r.pop("webhook_id"), r.pop("attempts")
            found = list(self.db.query("SELECT * FROM webhooks WHERE id = ?", [hook_id]))
            if found:
                self._spawn(public(r), found[0], attempts)

    def _spawn(self, alert: dict[str, Any], hook: dict[str, Any], attempts: int) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self._deliver(alert, hook, attempts))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    # --- delivery ---------------------------------------------------------------------------

    async def _deliver(self, alert: dict[str, Any], hook: dict[str, Any], attempts: int) -> None:
        """Send until a 2xx or `max_attempts`, backing off exponentially with jitter."""
        body = webhooks.body_for(hook["format"], alert, self.box)
        while True:
            attempts += 1
            try:
                url = webhooks.read_url(self.vault, hook["id"])
                await webhooks.post(self._client(), url, body, self.timeout)
            except DeliveryError as exc:
                error = str(exc)
            else:
                self._record(alert["id"], hook["id"], attempts, "delivered", None, None)
                return
            log.warning(
                "alert %s: delivery to webhook %s (%s) failed, attempt %d of %d: %s",
                alert["id"],
                hook["id"],
                hook["name"],
                attempts,
                self.max_attempts,
                error,
            )
            if attempts >= self.max_attempts:
                self._record(alert["id"], hook["id"], attempts, "failed", None, error)
                return
            delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempts - 1))
            delay *= random.uniform(0.5, 1.0)  # jitter: webhooks that failed together retry apart
            self._record(
                alert["id"], hook["id"], attempts, "pending", _iso(self.clock() + delay), error
            )
            await asyncio.sleep(delay)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def _record(
        self,
        alert_id: int,
        hook_id: str,
        attempts: int,
        status: str,
        next_at: str | None,
        error: str | None,
    ) -> None:
        try:
            self.db.execute(
                "UPDATE alert_deliveries SET attempts = ?, status = ?, next_at = ?, last_error = ? "
                "WHERE alert_id = ? AND webhook_id = ?",
                [attempts, status, next_at, error, alert_id, hook_id],
            )
        except sqlite3.Error as exc:
            log.warning("alerts: cannot record a delivery of alert %s: %s", alert_id, exc)
