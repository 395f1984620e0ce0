"""The admin API of cost governance over real HTTP: budgets and their status, alerts,
webhooks, suspensions, rate limits on the organisation, and who may do what."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.governance import Governance, store
from gateway.governance.alerts import AlertSink
from tests.gateway.admin.conftest import Admin, Reply
from tests.gateway.governance.conftest import add_usage
from tests.harness import free_port

USD = 1_000_000


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    a = Admin(tmp_path_factory.mktemp("aigw-governance-admin"))
    a.call("POST", "/departments", {"name": "eng"})
    a.call("POST", "/projects", {"name": "web", "department": "eng"})
    a.call("POST", "/users", {"name": "alice", "department": "eng"})
    yield a
    a.stop()


def _error(reply: Reply, status: int, code: str) -> str:
    assert reply.status == status, reply.raw
    assert reply.body["error"]["code"] == code
    return str(reply.body["error"]["message"])


def test_rate_limits_on_departments_projects_and_users(admin: Admin) -> None:
    for path in ("/departments/eng", "/projects/web", "/users/alice"):
        r = admin.call("PATCH", path, {"rpm": 600, "tpm": 100_000})
        assert r.status == 200 and (r.body["rpm"], r.body["tpm"]) == (600, 100_000), r.raw
        assert admin.call("PATCH", path, {"rpm": None}).body["rpm"] is None
    _error(admin.call("PATCH", "/projects/web", {"tpm": -1}), 400, "invalid_request")
    _error(admin.call("PATCH", "/users/alice", {"rpm": "many"}), 400, "invalid_type")


def test_budget_crud_and_status(admin: Admin) -> None:
    body = {"level": "project", "target": "web", "period": "monthly", "limit_micros": 100 * USD}
    r = admin.call("POST", "/budgets", body)
    assert r.status == 201, r.raw
    budget = r.body
    assert budget["id"].startswith("bud_") and budget["enforcement"] == "hard"
    assert budget["thresholds"] == [50, 80, 100]
    assert "already has a monthly budget" in _error(
        admin.call("POST", "/budgets", body), 409, "conflict"
    )
    _error(admin.call("POST", "/budgets", {**body, "target": "nope"}), 404, "not_found")
    _error(admin.call("POST", "/budgets", {**body, "period": "hourly"}), 400, "invalid_request")
    _error(admin.call("POST", "/budgets", {**body, "thresholds": [0]}), 400, "invalid_request")
    _error(admin.call("POST", "/budgets", {**body, "thresholds": ["50"]}), 400, "invalid_type")
    soft = admin.call(
        "POST",
        "/budgets",
        {"level": "user", "target": "alice", "period": "daily", "limit_micros": USD,
         "enforcement": "soft", "thresholds": [90, 25]},
    )  # fmt: skip
    assert soft.status == 201 and soft.body["thresholds"] == [25, 90]
    r = admin.call(
        "PATCH", f"/budgets/{budget['id']}", {"limit_micros": 50 * USD, "enforcement": "soft"}
    )
    assert (r.body["limit_micros"], r.body["enforcement"]) == (50 * USD, "soft")
    _error(
        admin.call("PATCH", f"/budgets/{budget['id']}", {"period": "daily"}), 400, "invalid_request"
    )
    listed = admin.call("GET", "/budgets?level=user", role="finance").body["data"]
    assert [b["id"] for b in listed] == [soft.body["id"]]

    add_usage(admin.db, _now_ts(), 5 * USD, key_id="k", project="web", department="eng")
    gw = admin.gateway  # spend recorded before a restart: rebuilt from the ledger at start
    assert gw is not None
    gw.governance = Governance.load(gw.db, gw.cfg, gw.vault)
    status = admin.call("GET", "/budgets/status?level=project", role="finance")
    assert status.status == 200, status.raw
    (row,) = status.body["data"]
    assert (row["id"], row["spent_micros"], row["reserved_micros"]) == (budget["id"], 5 * USD, 0)
    assert row["percent"] == 10.0 and row["resets_at"] and row["source"] == "budget"
    assert admin.call("DELETE", f"/budgets/{budget['id']}").status == 204
    _error(admin.call("GET", f"/budgets/{budget['id']}"), 404, "not_found")
    _error(admin.call("POST", "/budgets", body, role="finance"), 403, "forbidden")


def _now_ts() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _raise_alerts(admin: Admin, *keys: str) -> None:
    sink = AlertSink(admin.db)
    for n, key in enumerate(keys):
        sink.raise_alert(
            "budget_threshold",
            ("info", "critical")[n % 2],
            "project:web",
            key,
            f"alert {key}",
            {"n": n},
        )
    asyncio.run(sink.settle())


def test_alerts_list_filter_and_acknowledge(admin: Admin) -> None:
    _raise_alerts(admin, "a1", "a2", "a3")
    page = admin.call("GET", "/alerts?limit=2", role="finance").body
    assert [a["dedup_key"] for a in page["data"]] == ["a3", "a2"] and page["next_before_id"]
    older = admin.call("GET", f"/alerts?before_id={page['next_before_id']}").body["data"]
    assert [a["dedup_key"] for a in older] == ["a1"]
    critical = admin.call("GET", "/alerts?severity=critical").body["data"]
    assert [a["dedup_key"] for a in critical] == ["a2"] and critical[0]["details"] == {"n": 1}
    alert_id = critical[0]["id"]
    r = admin.call("POST", f"/alerts/{alert_id}/acknowledge")
    assert r.status == 200 and r.body["acknowledged_by"].startswith("token:")
    again = admin.call("POST", f"/alerts/{alert_id}/acknowledge").body
    assert again["acknowledged_at"] == r.body["acknowledged_at"]
    open_ones = admin.call("GET", "/alerts?acknowledged=false").body["data"]
    assert alert_id not in [a["id"] for a in open_ones]
    _error(admin.call("GET", "/alerts?acknowledged=maybe"), 400, "invalid_request")
    _error(admin.call("GET", "/alerts/999999"), 404, "not_found")
    _error(admin.call("POST", f"/alerts/{alert_id}/acknowledge", role="finance"), 403, "forbidden")


def test_webhooks_keep_their_url_secret(admin: Admin) -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/secret-token-123"
    r = admin.call("POST", "/webhooks", {"name": "ops", "format": "slack", "url": url})
    assert r.status == 201, r.raw
    hook: dict[str, Any] = r.body
    assert hook["display"] == "http://127.0.0.1/…" and "url" not in hook
    assert b"secret-token" not in admin.call("GET", "/webhooks").raw
    tested = admin.call("POST", f"/webhooks/{hook['id']}/test")
    assert tested.status == 200 and tested.body["delivered"] is False
    assert tested.body["error"] == "connection failed (ClientConnectorError)"
    _error(
        admin.call("POST", "/webhooks", {"name": "x", "format": "xml", "url": url}),
        400,
        "invalid_request",
    )
    _error(admin.call("GET", "/webhooks", role="finance"), 403, "forbidden")
    assert admin.call("DELETE", f"/webhooks/{hook['id']}").status == 204
    assert admin.gateway.vault is not None and not admin.gateway.vault.has(f"webhook/{hook['id']}")
    audit = admin.call("GET", "/audit?object_type=webhook").raw
    assert b"secret-token" not in audit


def test_suspensions_are_listed_and_lifted(admin: Admin) -> None:
    sid = store.suspend(admin.db, "system:breaker", "key", "key_x", "spent 10x its baseline")
    active = admin.call("GET", "/suspensions?active=true").body["data"]
    assert [s["id"] for s in active] == [sid]
    r = admin.call("POST", f"/suspensions/{sid}/lift")
    assert r.status == 200 and r.body["lifted_by"].startswith("token:")
    assert "was lifted" in _error(admin.call("POST", f"/suspensions/{sid}/lift"), 409, "conflict")
    assert admin.call("GET", "/suspensions?active=true").body["data"] == []
    _error(admin.call("POST", "/suspensions/abc/lift"), 404, "not_found")
