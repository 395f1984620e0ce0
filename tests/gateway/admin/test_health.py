"""Deployment health through the admin API: listing, per route, reset, roles and audit."""

from __future__ import annotations

import time
from dataclasses import fields
from typing import Any

import pytest

from gateway import catalog
from gateway.admin.health import SCHEMAS
from gateway.routing.health import DeploymentStatus
from gateway.tenancy.audit import list_audit
from tests.gateway.admin.conftest import Admin

_ROUTE = {
    "strategy": "priority",
    "deployments": [
        {"provider": "hp-a", "upstream_model": "big"},
        {"provider": "hp-b", "upstream_model": "mid"},
    ],
    "fallback_alias": "hp/small",
}


@pytest.fixture(scope="module")
def dep_ids(admin: Admin) -> list[str]:
    """Route hp/chat over two deployments, falling back to the plain model hp/small; a plain
    model hp-lonely that nothing routes to. The ids of hp/chat's deployments."""
    for name in ("hp-a", "hp-b"):
        catalog.add_provider(admin.db, catalog.validate_provider(name, "openai", None, None))
    catalog.add_model(admin.db, catalog.ModelDef("hp/small", "hp-a", "gpt-4o-mini"))
    catalog.add_model(admin.db, catalog.ModelDef("hp-lonely", "hp-b", "gpt-4o-mini"))
    put = admin.call("PUT", "/routes/hp/chat", _ROUTE)  # reloads the gateway at once
    assert put.status == 200, put.raw
    return [d["id"] for d in put.body["deployments"]]


def _open(admin: Admin, dep_id: str) -> None:
    """Fail the deployment until its circuit opens, as the request path would report it."""
    health = admin.gateway.health
    for _ in range(health.policy.consecutive_failures):
        health.record_failure(dep_id, "error", None, time.monotonic())


def _error(reply: Any, status: int, code: str) -> str:
    assert reply.status == status, reply.raw
    assert reply.body["error"]["code"] == code
    message: str = reply.body["error"]["message"]
    return message


def test_the_document_describes_every_status_field() -> None:
    health = SCHEMAS["DeploymentHealth"]["properties"]["health"]
    assert list(health["properties"]) == [f.name for f in fields(DeploymentStatus)]


def test_listing_and_per_route(admin: Admin, dep_ids: list[str]) -> None:
    first, second = dep_ids
    _open(admin, second)
    admin.gateway.health.record_success(first, 0.25, 0.5, time.monotonic())

    rows = admin.call("GET", "/health/deployments", role="auditor").body["data"]
    # Routes and the models they fall back to; a plain model nothing routes to learns nothing.
    assert [(r["route"], r["deployment_id"]) for r in rows] == [
        ("hp/chat", first),
        ("hp/chat", second),
        ("hp/small", "hp/small"),  # a plain model's one deployment is named by its alias
    ]
    per_route = admin.call("GET", "/routes/hp/chat/health", role="auditor")
    assert per_route.status == 200
    a, b = per_route.body["data"]
    assert (a["position"], a["label"], a["provider"], a["upstream_model"]) == (
        0,
        "hp-a/big",
        "hp-a",
        "big",
    )
    assert a["health"]["state"] == "closed" and a["health"]["ttft_ms"] == 250.0
    assert b["health"]["state"] == "open" and not b["health"]["available"]
    assert b["health"]["blocked_by"] == "breaker" and 0 < b["health"]["retry_in_s"] <= 30
    assert b["health"]["last_failure_kind"] == "error"
    assert b["health"]["last_failure_at"].endswith("Z") and b["health"]["ttft_ms"] is None

    filtered = admin.call("GET", "/health/deployments?route=hp/chat").body["data"]
    assert [r["deployment_id"] for r in filtered] == [first, second]
    lonely = admin.call("GET", "/routes/hp-lonely/health").body["data"]
    assert [r["deployment_id"] for r in lonely] == ["hp-lonely"]  # any alias served, asked by name

    assert admin.call("GET", "/health/deployments", role="finance").status == 403
    assert admin.call("GET", "/routes/hp/chat/health", role="finance").status == 403


def test_unknown_aliases_are_404_in_the_envelope(admin: Admin, dep_ids: list[str]) -> None:
    assert "no route or model named 'nope'" in _error(
        admin.call("GET", "/routes/nope/health"), 404, "not_found"
    )
    _error(admin.call("GET", "/health/deployments?route=nope"), 404, "not_found")
    _error(admin.call("POST", "/health/deployments/dep_nope/reset"), 404, "not_found")


def test_reset_closes_the_breaker_and_is_audited(admin: Admin, dep_ids: list[str]) -> None:
    dep = dep_ids[1]
    _open(admin, dep)
    admin.gateway.health.record_failure(dep, "rate_limited", 120, time.monotonic())
    _error(admin.call("POST", f"/health/deployments/{dep}/reset", role="auditor"), 403, "forbidden")
    assert not admin.gateway.health.available(dep, time.monotonic())  # the refusal changed nothing

    reply = admin.call("POST", f"/health/deployments/{dep}/reset")
    assert reply.status == 200, reply.raw
    entry = reply.body
    assert (entry["route"], entry["deployment_id"], entry["label"]) == ("hp/chat", dep, "hp-b/mid")
    assert entry["health"]["state"] == "closed" and entry["health"]["available"]
    assert entry["health"]["retry_in_s"] == 0 and entry["health"]["rate_limited"] >= 1
    assert admin.gateway.health.available(dep, time.monotonic())

    (row,) = list_audit(admin.db, object_type="deployment_health", limit=1)
    assert (row["action"], row["object_id"]) == ("reset", dep)
    assert row["actor"].startswith("token:")
    assert row["before"]["state"] == "open" and row["after"]["state"] == "closed"
    assert admin.call("GET", "/audit/verify").body["ok"] is True


def test_reset_of_an_id_with_a_slash(admin: Admin, dep_ids: list[str]) -> None:
    _open(admin, "hp/small")
    reply = admin.call("POST", "/health/deployments/hp%2Fsmall/reset")
    assert reply.status == 200, reply.raw
    assert reply.body["deployment_id"] == "hp/small" and reply.body["health"]["state"] == "closed"
