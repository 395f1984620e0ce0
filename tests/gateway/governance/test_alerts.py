"""The alert sink: stored once per dedup key (across restarts too), delivered to real local
webhooks as JSON or Slack messages, retried with backoff, never leaking the URL."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from aiohttp import web

from appliance.config import parse_config
from appliance.vault import Vault, open_vault
from gateway.governance import store, webhooks
from gateway.governance.alerts import AlertSink
from gateway.governance.webhooks import DeliveryError
from tests.gateway.governance.conftest import ACTOR
from tests.harness import free_port

SECRET_PATH = "/services/T000/B000/xoxb-very-secret-token"


@dataclass
class Receiver:
    """A webhook endpoint on loopback that answers with the statuses it is told to."""

    port: int
    statuses: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{SECRET_PATH}"

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(free_port())
    app = web.Application()
    app.router.add_post(SECRET_PATH, r.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", r.port).start()
    yield r
    await runner.cleanup()


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return open_vault(parse_config({"state": {"dir": str(tmp_path / "state")}}))


def _sink(db: sqlite_utils.Database, vault: Vault, attempts: int = 3) -> AlertSink:
    return AlertSink(db, vault, timeout=2.0, max_attempts=attempts, backoff_base=0.01)


def _raise(sink: AlertSink, key: str = "budget:b1:2025-01-15:80") -> bool:
    return sink.raise_alert(
        "budget_threshold",
        "warning",
        "project:web",
        key,
        "project 'web' has used 80% of its daily budget",
        {"threshold": 80},
    )


def _deliveries(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM alert_deliveries ORDER BY webhook_id"))


async def test_alerts_are_stored_once_and_delivered_as_json_and_slack(
    db: sqlite_utils.Database, vault: Vault, receiver: Receiver
) -> None:
    as_json = webhooks.create_webhook(db, vault, ACTOR, name="ops", format="json", url=receiver.url)
    webhooks.create_webhook(db, vault, ACTOR, name="chat", format="slack", url=receiver.url)
    assert as_json["display"] == "http://127.0.0.1/…" and as_json["enabled"] is True
    sink = _sink(db, vault)
    sink.start()
    assert _raise(sink) is True
    assert _raise(sink) is False  # the same event again
    await sink.settle()
    await sink.stop()
    (alert,) = store.list_alerts(db)
    assert alert["kind"] == "budget_threshold" and alert["details"] == {"threshold": 80}
    assert [d["status"] for d in alert["deliveries"]] == ["delivered", "delivered"]
    by_shape = {("alert" in b): b for b in receiver.bodies}
    generic = by_shape[True]["alert"]
    assert generic["id"] == alert["id"] and generic["dedup_key"] == "budget:b1:2025-01-15:80"
    assert generic["severity"] == "warning" and generic["details"] == {"threshold": 80}
    slack = by_shape[False]
    assert slack["text"].startswith(":warning: [warning] project 'web' has used 80%")
    assert [b["type"] for b in slack["blocks"]] == ["header", "section", "context"]
    assert slack["blocks"][1]["text"]["text"] == "project 'web' has used 80% of its daily budget"

    restarted = _sink(db, vault)  # a new process raises the same event: stored once, sent once
    restarted.start()
    assert _raise(restarted) is True
    await restarted.settle()
    await restarted.stop()
    assert len(store.list_alerts(db)) == 1 and len(receiver.bodies) == 2


async def test_retries_after_500s_then_gives_up_at_max_attempts(
    db: sqlite_utils.Database,
    vault: Vault,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    webhooks.create_webhook(db, vault, ACTOR, name="ops", format="json", url=receiver.url)
    receiver.statuses = [500, 503]
    sink = _sink(db, vault, attempts=3)
    sink.start()
    _raise(sink, "first")
    await sink.settle()
    (delivery,) = _deliveries(db)
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 3)
    assert len(receiver.bodies) == 3

    receiver.statuses = [500, 500, 500, 200]
    _raise(sink, "second")
    await sink.settle()
    await sink.stop()
    failed = _deliveries(db)[-1]
    assert (failed["status"], failed["attempts"], failed["last_error"]) == ("failed", 3, "HTTP 500")
    assert len(receiver.bodies) == 6
    assert "attempt 3 of 3: HTTP 500" in caplog.text
    # The URL is a secret: nowhere in the logs or the database.
    assert SECRET_PATH not in caplog.text and "xoxb" not in caplog.text
    dump = "\n".join(db.conn.iterdump())
    assert "xoxb" not in dump and str(receiver.port) not in dump


async def test_unreachable_webhook_and_test_send(
    db: sqlite_utils.Database, vault: Vault, receiver: Receiver
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook/secret-path"
    hook = webhooks.create_webhook(db, vault, ACTOR, name="dead", format="slack", url=dead)
    with pytest.raises(DeliveryError) as caught:
        await webhooks.send_test(vault, hook, "aigw", 2.0, "2025-01-15T12:00:00.000Z")
    assert str(caught.value) == "connection failed (ClientConnectorError)"
    live = webhooks.create_webhook(db, vault, ACTOR, name="live", format="json", url=receiver.url)
    await webhooks.send_test(vault, live, "aigw", 2.0, "2025-01-15T12:00:00.000Z")
    assert receiver.bodies[-1]["alert"]["kind"] == "test"
    webhooks.delete_webhook(db, vault, ACTOR, live["id"])
    assert not vault.has(webhooks.secret_id(live["id"]))
    assert [h["name"] for h in webhooks.list_webhooks(db)] == ["dead"]


async def test_pending_deliveries_resume_at_the_next_start(
    db: sqlite_utils.Database, vault: Vault, receiver: Receiver
) -> None:
    webhooks.create_webhook(db, vault, ACTOR, name="ops", format="json", url=receiver.url)
    sink = _sink(db, vault)
    _raise(sink)  # raised, but the gateway stops before delivering
    sink.start()
    await sink.stop()
    assert [d["status"] for d in _deliveries(db)] in (["pending"], ["delivered"])
    later = _sink(db, vault)
    later.start()
    await later.settle()
    await later.stop()
    assert [d["status"] for d in _deliveries(db)] == ["delivered"]
    assert len(receiver.bodies) == 1


def test_webhook_urls_are_checked_and_stored_only_in_the_vault(
    db: sqlite_utils.Database, vault: Vault
) -> None:
    from gateway.errors import InvalidRequest

    for bad in ("ftp://x/y", "not a url", "http:///path"):
        with pytest.raises(InvalidRequest):
            webhooks.create_webhook(db, vault, ACTOR, name="x", format="json", url=bad)
    with pytest.raises(InvalidRequest):
        webhooks.create_webhook(db, vault, ACTOR, name="x", format="xml", url="https://a/b")
    hook = webhooks.create_webhook(
        db, vault, ACTOR, name="x", format="json", url="https://hooks.example/T/secret"
    )
    assert vault.get(webhooks.secret_id(hook["id"])) == "https://hooks.example/T/secret"
    assert "secret" not in "\n".join(db.conn.iterdump())
