"""systemd's notification protocol, hand-written (one datagram, no library needed).

`aigw-gateway.service` is `Type=notify`: the gateway says READY=1 once it listens and is
advertised, pings WATCHDOG=1 from its event loop (so a loop that hangs stops pinging and systemd
restarts the service), and keeps a STATUS= line with its request rate for `systemctl status`.
Outside systemd ($NOTIFY_SOCKET unset) every call here is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Protocol

log = logging.getLogger(__name__)
# A wedged systemd must not stall the event loop for long; the next ping retries anyway.
SEND_TIMEOUT_S = 0.5
STATUS_INTERVAL_S = 5.0


def _address(raw: str) -> str | None:
    """$NOTIFY_SOCKET as a socket address: a path, or `@name` for the abstract namespace."""
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None  # vsock: and others: not used on the box


def notify(*lines: str) -> bool:
    """Send `KEY=value` lines to systemd; False when not under systemd or when it fails."""
    raw = os.environ.get("NOTIFY_SOCKET", "")
    addr = _address(raw) if raw else None
    if addr is None or not lines:
        return False
    payload = "\n".join(lines).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT_S)
            sock.sendto(payload, addr)
    except OSError as exc:
        log.warning("systemd notification failed: %s", exc.strerror or exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between pings (half of $WATCHDOG_USEC), or None when this process has none."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # the watchdog is our parent's (or another process's), not ours
    return int(usec) / 2 / 1_000_000


class _Periodic:
    """A task on the running event loop that runs `tick` every `interval` seconds."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def _tick(self) -> None:
        raise NotImplementedError

    def _spawn(self, interval: float, name: str) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(interval), name=name)

    async def _run(self, interval: float) -> None:
        while True:
            self._tick()
            # asyncio.sleep, not a thread: a blocked loop delays this sleep and the pings stop.
            await asyncio.sleep(interval)

    @property
    def running(self) -> bool:
        """Whether the task is scheduled."""
        return self._task is not None and not self._task.done()

    def stop(self) -> None:
        """Cancel the task (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None


class Watchdog(_Periodic):
    """WATCHDOG=1 every WATCHDOG_USEC/2 from the event loop; a no-op without a watchdog."""

    def __init__(self) -> None:
        super().__init__()
        self.interval = watchdog_interval()

    def _tick(self) -> None:
        notify("WATCHDOG=1")

    def start(self) -> bool:
        """Start pinging (call from the event loop); False when systemd set no watchdog."""
        if self.interval is None:
            return False
        self._spawn(self.interval, "sd-watchdog")
        return True


class _Counters(Protocol):
    def totals(self) -> tuple[int, int, int]: ...


class _Metered(Protocol):
    @property
    def metrics(self) -> _Counters: ...


class StatusReporter(_Periodic):
    """STATUS= every few seconds: requests/s, refused/s and failed/s since the last report.

    It reads the counters the gateway keeps for /metrics (a few dict entries, summed on the
    event loop every `interval` seconds), so the hot path does no extra work.
    """

    def __init__(self, gw: _Metered, interval: float = STATUS_INTERVAL_S) -> None:
        super().__init__()
        self._gw, self.interval = gw, interval
        self._last: tuple[float, int, int, int] | None = None

    def line(self) -> str:
        """The status text for now, and remember the counts for the next rate."""
        now = time.monotonic()
        total, refused, failed = self._gw.metrics.totals()
        last, self._last = self._last, (now, total, refused, failed)
        if last is None or now <= last[0]:
            return f"serving; {total} requests since start"
        dt = now - last[0]
        rate, ref, fail = (
            (a - b) / dt for a, b in zip((total, refused, failed), last[1:], strict=True)
        )
        return (
            f"serving {rate:.1f} req/s ({ref:.1f}/s refused, {fail:.1f}/s failed) "
            f"over {dt:.0f} s; {total} requests since start"
        )

    def _tick(self) -> None:
        notify(f"STATUS={self.line()}")

    def start(self) -> bool:
        """Start reporting (call from the event loop); False when not under systemd."""
        if not os.environ.get("NOTIFY_SOCKET"):
            return False
        self._spawn(self.interval, "sd-status")
        return True
