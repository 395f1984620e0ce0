"""systemd's notification protocol against real AF_UNIX datagram sockets (a path and an
abstract name), read the way systemd reads them; the watchdog is shown to stop pinging while
the event loop is blocked and to resume after."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.sdnotify import StatusReporter, Watchdog, notify, watchdog_interval
from gateway.metrics import Metrics
from gateway.usage import Usage


class Listener:
    """A datagram socket like systemd's notify socket, with a thread recording arrivals."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.got: list[tuple[float, str]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.got.append((time.monotonic(), data.decode()))

    def messages(self, timeout: float = 2.0, count: int = 1) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.got) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return [m for _, m in self.got]

    def close(self) -> None:
        self._done.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    path = tmp_path / "notify"
    lst = Listener(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield lst
    lst.close()


def test_notify_sends_one_datagram_with_the_lines(listener: Listener) -> None:
    assert notify("READY=1", "STATUS=listening on 127.0.0.1:8080")
    assert listener.messages() == ["READY=1\nSTATUS=listening on 127.0.0.1:8080"]


def test_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"aigw-test-{os.getpid()}-{time.monotonic_ns()}"
    lst = Listener("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("READY=1")
        assert lst.messages() == ["READY=1"]
    finally:
        lst.close()


def test_notify_is_a_no_op_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")  # not a kind the box uses
    assert notify("READY=1") is False


def test_notify_to_a_socket_that_is_gone_fails_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "missing"))
    assert notify("READY=1") is False


def test_watchdog_interval_is_half_the_timeout_and_only_for_our_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # our parent's watchdog
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", "")
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert watchdog_interval() is None


def test_watchdog_without_systemd_does_nothing(listener: Listener) -> None:
    async def main() -> bool:
        wd = Watchdog()
        started = wd.start()
        await asyncio.sleep(0.2)
        assert not wd.running
        return started

    assert asyncio.run(main()) is False
    assert listener.got == []


def test_watchdog_of_another_pid_does_nothing(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.setenv("WATCHDOG_PID", "1")

    async def main() -> bool:
        started = Watchdog().start()
        await asyncio.sleep(0.3)
        return started

    assert asyncio.run(main()) is False
    assert listener.got == []


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_watchdog_pings_stop_while_the_loop_hangs_and_resume(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    marks: dict[str, float] = {}

    async def main() -> None:
        wd = Watchdog()
        assert wd.start() and wd.running
        await asyncio.sleep(0.55)
        marks["hang"] = time.monotonic()
        time.sleep(1.0)  # the event loop hangs: nothing on it runs
        marks["resume"] = time.monotonic()
        await asyncio.sleep(0.55)
        wd.stop()
        marks["stopped"] = time.monotonic()
        await asyncio.sleep(0.3)
        assert not wd.running

    asyncio.run(main())
    pings = [t for t, m in listener.got if m == "WATCHDOG=1"]
    assert len(pings) == len(listener.got)
    before = [t for t in pings if t < marks["hang"]]
    during = [t for t in pings if marks["hang"] + 0.05 < t < marks["resume"]]
    after = [t for t in pings if marks["resume"] <= t < marks["stopped"]]
    assert len(before) >= 4 and max(_gaps(before)) < 0.3
    assert during == []
    assert len(after) >= 4 and max(_gaps(after)) < 0.3
    assert max(_gaps(pings)) >= 0.9  # systemd would see the missed deadline
    assert not [t for t in pings if t > marks["stopped"] + 0.05]


@dataclass
class FakeGateway:
    """What StatusReporter reads of the gateway: its metrics counters (the real class)."""

    metrics: Metrics = field(default_factory=Metrics)

    def finish(self, status: int, n: int = 1) -> None:
        for _ in range(n):
            self.metrics.observe("m", "p", status, 0.01, None, Usage(), None)


def test_status_line_reports_the_request_rate() -> None:
    gw = FakeGateway()
    gw.finish(200, 3)
    rep = StatusReporter(gw, interval=1.0)
    assert rep.line() == "serving; 3 requests since start"
    gw.finish(200, 10)
    gw.finish(429, 4)
    gw.finish(502, 2)
    time.sleep(0.5)
    line = rep.line()
    assert line.endswith("; 19 requests since start")
    rate = float(line.split()[1])
    assert 16 / 0.8 < rate < 16 / 0.45  # 16 requests in about half a second
    assert "/s refused" in line and "/s failed" in line
    refused = float(line.split("(")[1].split("/s")[0])
    assert refused == pytest.approx(rate / 4, abs=0.1)


def test_status_reporter_sends_status_lines(listener: Listener) -> None:
    gw = FakeGateway()

    async def main() -> None:
        rep = StatusReporter(gw, interval=0.1)
        assert rep.start()
        gw.finish(200, 5)
        await asyncio.sleep(0.35)
        rep.stop()

    asyncio.run(main())
    msgs = listener.messages(count=3)
    assert len(msgs) >= 3 and all(m.startswith("STATUS=serving") for m in msgs)
    assert "\n" not in "".join(msgs)
    assert msgs[-1].endswith("; 5 requests since start")


def test_status_reporter_without_systemd_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)

    async def main() -> bool:
        return StatusReporter(FakeGateway()).start()

    assert asyncio.run(main()) is False
