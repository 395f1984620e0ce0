"""`aigw routes health` and `aigw routes health-reset` against a running gateway's admin API."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from aiohttp import web

from appliance.config import load_config
from appliance.store import open_store
from gateway.admin import build_admin_app
from gateway.state import Gateway
from gateway.tenancy import store as tenancy
from tests.appliance.conftest import Cli
from tests.harness import LoopThread, free_port


class Box:
    """The admin API of a gateway that has loaded its routes, as a running box serves it, on
    loopback TCP; its health is the test's to set."""

    def __init__(self, cli: Cli) -> None:
        self.cfg = load_config(str(cli.config))
        self.db = open_store(cli.state / "aigw.db")
        self.gateway = Gateway(self.cfg, self.db)
        self.port = free_port()
        self.lt = LoopThread()
        self.runner: web.AppRunner | None = None
        self.lt.run(self._start())

    async def _start(self) -> None:
        self.gateway.reload()  # what start() does first; no writer or refresh loop needed here
        app = web.Application()
        app.add_subapp("/admin/v1", build_admin_app(self.gateway))
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def remote(self, role: str) -> tuple[str, ...]:
        """The global options that reach this box with a new token of `role`."""
        token = tenancy.create_admin_token(self.db, "test", f"cli-{role}", role)[1]
        return ("--url", f"http://127.0.0.1:{self.port}", "--token", token)

    def stop(self) -> None:
        if self.runner is not None:
            self.lt.run(self.runner.cleanup())
        self.lt.run(self.gateway.stop())
        self.lt.stop()
        self.db.conn.close()


@pytest.fixture
def box(cli: Cli) -> Iterator[Box]:
    """Route team/chat over oai/gpt-4o then gpu/meta/llama-3, served by a running gateway."""
    cli.ok("providers", "add", "oai", "--kind", "openai")
    cli.ok("providers", "add", "gpu", "--kind", "openai", "--base-url", "http://gpu:8000/v1")
    cli.ok(
        "routes", "set", "team/chat", "--strategy", "priority",
        "--deployment", "oai/gpt-4o", "--deployment", "gpu/meta/llama-3",
    )  # fmt: skip
    b = Box(cli)
    yield b
    b.stop()


def test_health_needs_a_running_gateway(cli: Cli) -> None:
    assert "no gateway is running on this box" in cli.fails("routes", "health")
    assert "no gateway is running on this box" in cli.fails("routes", "health-reset", "dep_x")


def test_health_table_json_and_reset(cli: Cli, box: Box) -> None:
    admin, auditor = box.remote("admin"), box.remote("auditor")
    first, second = (d.id for d in box.gateway.routes["team/chat"].deployments)
    health = box.gateway.health
    health.record_success(first, 0.2504, 0.75, time.monotonic())
    for _ in range(health.policy.consecutive_failures):
        health.record_failure(second, "error", None, time.monotonic())

    header, row1, row2 = cli.ok(*auditor, "routes", "health").out.splitlines()
    assert header.split() == [
        "ROUTE",
        "DEPLOYMENT",
        "ID",
        "STATE",
        "FAILURES",
        "ERROR_RATE",
        "RETRY_IN",
        "TTFT_MS",
        "LATENCY_MS",
    ]
    # ERROR_RATE "0% of 1", RETRY_IN "-" (available), TTFT_MS and LATENCY_MS whole ms.
    assert row1.split() == [
        "team/chat", "oai/gpt-4o", first, "closed", "0", "0%", "of", "1", "-", "250", "750"
    ]  # fmt: skip
    # Open: a fresh (empty) window, 30 s of breaker (rounded up) to wait, nothing measured.
    cells = row2.split()
    assert cells[:6] == ["team/chat", "gpu/meta/llama-3", second, "open", "0", "-"]
    assert cells[6] in ("30s", "29s") and cells[7:] == ["breaker", "-", "-"]

    rows = cli.ok(*auditor, "routes", "health", "team/chat", "--json").json
    assert [r["deployment_id"] for r in rows] == [first, second]
    assert rows[1]["health"]["state"] == "open"
    assert "no route or model named 'nope'" in cli.fails(*auditor, "routes", "health", "nope")

    assert "the auditor role may not POST" in cli.fails(*auditor, "routes", "health-reset", second)
    out = cli.ok(*admin, "routes", "health-reset", second).out
    assert out == f"deployment {second} (gpu/meta/llama-3 of route team/chat): circuit closed\n"
    assert health.available(second, time.monotonic())
    after = cli.ok(*admin, "routes", "health", "--json").json
    assert [r["health"]["state"] for r in after] == ["closed", "closed"]
    assert "no deployment with id 'dep_nope'" in cli.fails(
        *admin, "routes", "health-reset", "dep_nope"
    )
