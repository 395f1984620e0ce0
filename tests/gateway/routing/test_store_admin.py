"""Routes in the store (validation, audit, version bumps) and through the admin API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from appliance.errors import ConflictError, NotFoundError
from appliance.store import open_store
from gateway import catalog
from gateway.errors import InvalidRequest
from gateway.routing import load_routes
from gateway.routing import store as routes
from gateway.tenancy import store as tenancy
from gateway.tenancy.audit import list_audit
from tests.gateway.admin.conftest import Admin

ACTOR = "test:admin"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite_utils.Database]:
    """A store with two providers and a plain model."""
    d = open_store(tmp_path / "aigw.db")
    for name in ("p1", "p2"):
        catalog.add_provider(d, catalog.validate_provider(name, "openai", None, None))
    catalog.add_model(d, catalog.ModelDef("small", "p1", "gpt-4o-mini"))
    yield d
    d.conn.close()


def _put(db: sqlite_utils.Database, alias: str = "chat", **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "strategy": "priority",
        "deployments": [
            {"provider": "p1", "upstream_model": "big", "context_window": 128000},
            {"provider": "p2", "upstream_model": "mid", "weight": 3, "tools": False},
        ],
    }
    args.update(kw)
    return routes.put_route(db, ACTOR, alias=alias, **args)


def test_put_get_list_and_load(db: sqlite_utils.Database) -> None:
    v0 = catalog.catalog_version(db)
    tiers = [{"name": "simple", "when": {"max_prompt_tokens": 2000}, "use": [1]}]
    r = _put(db, fallback_alias="small", tiers=tiers, max_attempts=2, max_seconds=12)
    assert catalog.catalog_version(db) == v0 + 1
    assert r["alias"] == "chat" and r["fallback_alias"] == "small" and r["max_seconds"] == 12.0
    d0, d1 = r["deployments"]
    assert d0["id"].startswith("dep_") and d0["position"] == 0 and d0["context_window"] == 128000
    assert (d1["weight"], d1["tools"], d1["vision"], d1["json_mode"]) == (3, False, False, True)
    assert r["tiers"] == tiers
    assert routes.get_route(db, "chat") == r and routes.list_routes(db) == [r]
    loaded = load_routes(db)["chat"]
    assert [d.id for d in loaded.deployments] == [d0["id"], d1["id"]]
    assert loaded.tiers[0].use == (d1["id"],) and loaded.max_attempts == 2
    (entry,) = [a for a in list_audit(db, limit=5) if a["object_type"] == "route"]
    assert (entry["action"], entry["object_id"], entry["before"]) == ("create", "chat", None)
    assert entry["after"]["deployments"][1]["upstream_model"] == "mid"


def test_replace_keeps_ids_of_unchanged_deployments_and_rewrites_tiers(
    db: sqlite_utils.Database,
) -> None:
    first = _put(db)
    kept = first["deployments"][1]["id"]
    tiers = [{"name": "t", "use": [kept]}]  # by id: stored as a position
    second = _put(
        db,
        strategy="weighted",
        deployments=[
            {"provider": "p2", "upstream_model": "mid", "weight": 5},
            {"provider": "p1", "upstream_model": "new"},
        ],
        tiers=tiers,
    )
    assert second["deployments"][0]["id"] == kept
    assert second["deployments"][1]["id"] not in {d["id"] for d in first["deployments"]}
    assert second["tiers"] == [{"name": "t", "use": [0]}]
    assert second["created_at"] == first["created_at"]
    entry = list_audit(db, limit=1)[0]
    assert entry["action"] == "update" and entry["before"]["strategy"] == "priority"
    n = db.execute("SELECT count(*) FROM deployments WHERE route = 'chat'").fetchone()[0]
    assert n == 2


@pytest.mark.parametrize(
    ("kw", "error", "text"),
    [
        ({"strategy": "random"}, InvalidRequest, "strategy 'random' is unknown"),
        ({"deployments": []}, InvalidRequest, "at least one deployment"),
        ({"deployments": [{"provider": "p1"}]}, InvalidRequest, "'upstream_model'"),
        ({"deployments": [{"provider": "nope", "upstream_model": "m"}]}, NotFoundError, "nope"),
        (
            {"deployments": [{"provider": "p1", "upstream_model": "m", "colour": 1}]},
            InvalidRequest,
            "unknown field 'colour'",
        ),
        (
            {"deployments": [{"provider": "p1", "upstream_model": "m", "weight": -1}]},
            InvalidRequest,
            "'weight'",
        ),
        (
            {"deployments": [{"provider": "p1", "upstream_model": "m", "vision": "yes"}]},
            InvalidRequest,
            "'vision'",
        ),
        (
            {
                "strategy": "weighted",
                "deployments": [{"provider": "p1", "upstream_model": "m", "weight": 0}],
            },
            InvalidRequest,
            "weight above 0",
        ),
        ({"tiers": [{"name": "x", "use": [7]}]}, InvalidRequest, "no deployment of the route"),
        ({"tiers": [{"name": "x", "when": {"colour": 1}, "use": [0]}]}, InvalidRequest, "colour"),
        ({"max_attempts": 0}, InvalidRequest, "max_attempts"),
        ({"max_attempts": 2.5}, InvalidRequest, "max_attempts"),
        ({"max_seconds": 0}, InvalidRequest, "max_seconds"),
        ({"fallback_alias": "chat"}, InvalidRequest, "fallback"),
        ({"fallback_alias": "ghost"}, NotFoundError, "neither a route nor a model"),
    ],
)
def test_put_refuses_bad_routes(
    db: sqlite_utils.Database, kw: dict[str, Any], error: type[Exception], text: str
) -> None:
    v0 = catalog.catalog_version(db)
    with pytest.raises(error, match=text):
        _put(db, **kw)
    assert routes.list_routes(db) == [] and catalog.catalog_version(db) == v0


def test_aliases_are_either_a_route_or_a_model(db: sqlite_utils.Database) -> None:
    with pytest.raises(ConflictError, match="is a model alias"):
        _put(db, alias="small")
    _put(db)
    with pytest.raises(ConflictError, match="is a route"):
        catalog.add_model(db, catalog.ModelDef("chat", "p1", "x"))


def test_fallbacks_exist_form_no_cycle_and_hold_their_targets(db: sqlite_utils.Database) -> None:
    _put(db, alias="a", fallback_alias="small")
    _put(db, alias="b", fallback_alias="a")
    with pytest.raises(InvalidRequest, match="cycle"):
        _put(db, alias="a", fallback_alias="b")
    with pytest.raises(ConflictError, match="fallback of route"):
        routes.delete_route(db, ACTOR, "a")
    with pytest.raises(ConflictError, match="fallback of route"):
        catalog.remove_model(db, "small")
    with pytest.raises(ConflictError, match="used by routes a, b;"):
        catalog.remove_provider(db, "p2")
    v = catalog.catalog_version(db)
    routes.delete_route(db, ACTOR, "b")
    routes.delete_route(db, ACTOR, "a")
    assert catalog.catalog_version(db) == v + 2
    assert (
        routes.list_routes(db) == []
        and db.execute("SELECT count(*) FROM deployments").fetchone()[0] == 0
    )
    assert list_audit(db, limit=1)[0]["action"] == "delete"
    with pytest.raises(NotFoundError):
        routes.delete_route(db, ACTOR, "a")
    with pytest.raises(NotFoundError):
        routes.get_route(db, "a")


def test_context_trim(db: sqlite_utils.Database) -> None:
    tenancy.create_department(db, ACTOR, name="eng")
    tenancy.create_project(db, ACTOR, name="web", department="eng")
    assert routes.set_context_trim(db, ACTOR, "web", True)["context_trim"] == 1
    assert tenancy.get_project(db, "web")["context_trim"] == 1
    with pytest.raises(InvalidRequest, match="true or false"):
        tenancy.update_project(db, ACTOR, "web", {"context_trim": "yes"})


# --- the admin API --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    """A fresh box with a provider and a model."""
    a = Admin(tmp_path_factory.mktemp("aigw-routes"))
    assert a.call("POST", "/providers", {"name": "p1", "kind": "openai"}).status == 201
    body = {"alias": "small", "provider": "p1", "upstream_model": "m"}
    assert a.call("POST", "/models", body).status == 201
    yield a
    a.stop()


_BODY = {
    "strategy": "least_latency",
    "deployments": [
        {"provider": "p1", "upstream_model": "gpt-4o", "params": {"temperature": 0}},
        {"provider": "p1", "upstream_model": "gpt-4o-mini", "confidential": True},
    ],
    "fallback_alias": "small",
    "tiers": [{"name": "cheap", "when": {"keywords": ["summarize"]}, "use": [1]}],
    "max_attempts": 2,
    "max_seconds": 20.5,
}


def test_admin_routes_round_trip_and_reach_the_gateway(admin: Admin) -> None:
    v0 = admin.call("GET", "/status").body["catalog_version"]
    put = admin.call("PUT", "/routes/team/chat", _BODY)
    assert put.status == 200, put.raw
    r = put.body
    assert r["alias"] == "team/chat" and r["strategy"] == "least_latency"
    assert r["deployments"][0]["params"] == {"temperature": 0}
    assert r["deployments"][1]["confidential"] is True and r["tiers"] == _BODY["tiers"]
    assert admin.call("GET", "/status").body["catalog_version"] == v0 + 1
    assert admin.gateway.routes["team/chat"].strategy == "least_latency"  # reloaded at once
    assert admin.call("GET", "/routes/team/chat", role="auditor").body == r
    assert admin.call("GET", "/routes", role="auditor").body["data"] == [r]
    assert admin.call("GET", "/routes", role="finance").status == 403
    assert admin.call("PUT", "/routes/x", _BODY, role="auditor").status == 403
    audit = admin.call("GET", "/audit?object_type=route")
    assert audit.body["data"][0]["object_id"] == "team/chat"

    assert admin.call("DELETE", "/routes/team/chat").status == 204
    assert admin.call("GET", "/routes/team/chat").status == 404
    assert "team/chat" not in admin.gateway.routes


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({**_BODY, "strategy": 3}, 400, "strategy"),
        ({**_BODY, "deployments": ["p1/m"]}, 400, "deployments"),
        ({**_BODY, "max_seconds": "soon"}, 400, "max_seconds"),
        ({**_BODY, "colour": "red"}, 400, "colour"),
        ({k: v for k, v in _BODY.items() if k != "deployments"}, 400, "deployments"),
        ({**_BODY, "fallback_alias": "ghost"}, 404, None),
        ({**_BODY, "deployments": [{"provider": "ghost", "upstream_model": "m"}]}, 404, None),
    ],
)
def test_admin_put_refusals(
    admin: Admin, body: dict[str, Any], status: int, param: str | None
) -> None:
    reply = admin.call("PUT", "/routes/bad", body)
    assert reply.status == status, reply.raw
    if param is not None:
        assert reply.body["error"]["details"]["param"] == param


def test_admin_conflicts(admin: Admin) -> None:
    assert admin.call("PUT", "/routes/small", _BODY).status == 409
    assert admin.call("PUT", "/routes/r1", _BODY).status == 200
    assert (
        admin.call(
            "POST", "/models", {"alias": "r1", "provider": "p1", "upstream_model": "m"}
        ).status
        == 409
    )
    assert admin.call("PUT", "/routes/r2", {**_BODY, "fallback_alias": "r1"}).status == 200
    assert admin.call("DELETE", "/routes/r1").status == 409
    assert admin.call("DELETE", "/routes/r2").status == 204
    assert admin.call("DELETE", "/routes/r1").status == 204


def test_admin_project_context_trim(admin: Admin) -> None:
    assert admin.call("POST", "/departments", {"name": "eng"}).status == 201
    assert admin.call("POST", "/projects", {"name": "web", "department": "eng"}).status == 201
    reply = admin.call("PATCH", "/projects/web", {"context_trim": True})
    assert reply.status == 200 and reply.body["context_trim"] is True
    assert admin.call("GET", "/projects/web").body["context_trim"] is True
    assert admin.call("PATCH", "/projects/web", {"context_trim": "on"}).status == 400
