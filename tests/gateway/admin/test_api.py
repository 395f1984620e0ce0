"""The admin API over real HTTP: CRUD of every object, key lifecycle, and the error envelope."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.migrations import SCHEMA_VERSION
from gateway.tenancy.audit import list_audit
from tests.gateway.admin.conftest import Admin, Reply


def _error(reply: Reply, status: int, code: str) -> dict[str, Any]:
    assert reply.status == status, reply.raw
    err: dict[str, Any] = reply.body["error"]
    assert err["code"] == code and err["message"]
    return err


def test_organisation_crud(admin: Admin) -> None:
    assert admin.call("POST", "/departments", {"name": "org-eng"}).status == 201
    r = admin.call("PATCH", "/departments/org-eng", {"description": "R&D"})
    assert r.status == 200 and r.body["description"] == "R&D"
    r = admin.call("POST", "/projects", {"name": "org-search", "department": "org-eng"})
    assert r.status == 201 and r.body["department"] == "org-eng"
    r = admin.call("POST", "/users", {"name": "org/bob", "email": "b@x.io", "department": None})
    assert r.status == 201
    assert admin.call("GET", "/users/org/bob").body["email"] == "b@x.io"
    names = [p["name"] for p in admin.call("GET", "/projects?department=org-eng").body["data"]]
    assert names == ["org-search"]
    _error(admin.call("DELETE", "/departments/org-eng"), 409, "conflict")
    _error(admin.call("POST", "/departments", {"name": "org-eng"}), 409, "conflict")
    assert admin.call("DELETE", "/projects/org-search").status == 204
    assert admin.call("DELETE", "/users/org/bob").status == 204
    assert admin.call("DELETE", "/departments/org-eng").status == 204
    _error(admin.call("GET", "/departments/org-eng"), 404, "not_found")


def test_key_lifecycle(admin: Admin) -> None:
    admin.call("POST", "/departments", {"name": "kl-dept"})
    admin.call("POST", "/projects", {"name": "kl-proj", "department": "kl-dept"})
    body = {"name": "ci", "project": "kl-proj", "models": ["gpt-*"], "cidrs": ["10.0.0.1/8"]}
    r = admin.call("POST", "/keys", body)
    assert r.status == 201 and r.body["secret"].startswith("sk-aigw-")
    key_id, secret = r.body["id"], r.body["secret"]
    assert r.body["cidrs"] == ["10.0.0.0/8"] and "hash" not in r.body
    got = admin.call("GET", f"/keys/{key_id}").body
    assert "secret" not in got and got["prefix"] == secret[:12] + "…"
    assert admin.call("PATCH", f"/keys/{key_id}", {"rpm": 30}).body["rpm"] == 30
    r = admin.call("POST", f"/keys/{key_id}/rotate", {"grace_seconds": 0})
    assert r.status == 200 and r.body["secret"] != secret and r.body["prev_expires_at"] is None
    assert admin.call("POST", f"/keys/{key_id}/rotate").status == 200  # default grace
    assert admin.call("POST", f"/keys/{key_id}/disable").body["status"] == "disabled"
    assert admin.call("POST", f"/keys/{key_id}/enable").body["status"] == "active"
    _error(admin.call("DELETE", f"/keys/{key_id}"), 409, "conflict")
    assert admin.call("POST", f"/keys/{key_id}/revoke").body["status"] == "revoked"
    _error(admin.call("POST", f"/keys/{key_id}/enable"), 409, "conflict")
    assert [k["id"] for k in admin.call("GET", "/keys?project=kl-proj").body["data"]] == [key_id]
    assert admin.call("DELETE", f"/keys/{key_id}").status == 204
    _error(admin.call("GET", f"/keys/{key_id}"), 404, "not_found")


def test_catalog_through_the_api_is_audited(admin: Admin) -> None:
    r = admin.call("POST", "/providers", {"name": "cat-p", "kind": "openai", "api_key_env": "K"})
    assert r.status == 201 and r.body["base_url"] == "https://api.openai.com/v1"
    r = admin.call(
        "POST", "/models", {"alias": "cat/m", "provider": "cat-p", "upstream_model": "x"}
    )
    assert r.status == 201
    assert admin.call("GET", "/models/cat/m").body["provider"] == "cat-p"
    assert [p["name"] for p in admin.call("GET", "/providers").body["data"]] == ["cat-p", "local"]
    _error(admin.call("DELETE", "/providers/cat-p"), 409, "conflict")
    _error(admin.call("POST", "/providers", {"name": "x", "kind": "nope"}), 400, "invalid_request")
    assert admin.call("DELETE", "/models/cat/m").status == 204
    assert admin.call("DELETE", "/providers/cat-p").status == 204
    rows = list_audit(admin.db, object_type="provider")
    assert [r["action"] for r in rows][:2] == ["delete", "create"]
    assert rows[0]["actor"].startswith("token:adm_")


def test_admin_tokens_and_revocation(admin: Admin) -> None:
    r = admin.call("POST", "/admin-tokens", {"name": "tok-ops", "role": "auditor"})
    assert r.status == 201 and r.body["token"].startswith("aigw-admin-")
    token, token_id = r.body["token"], r.body["id"]
    assert admin.call("GET", "/status", token=token).status == 200
    assert "token" not in admin.call("GET", f"/admin-tokens/{token_id}").body
    assert admin.call("POST", f"/admin-tokens/{token_id}/revoke").body["revoked_at"]
    _error(admin.call("GET", "/status", token=token), 401, "unauthenticated")
    _error(
        admin.call("POST", "/admin-tokens", {"name": "x", "role": "root"}), 400, "invalid_request"
    )


def test_audit_usage_and_status(admin: Admin) -> None:
    admin.call("POST", "/departments", {"name": "aus-dept"})
    page = admin.call("GET", "/audit?limit=2").body
    assert len(page["data"]) == 2 and page["next_before_id"] == page["data"][-1]["id"]
    older = admin.call("GET", f"/audit?limit=2&before_id={page['next_before_id']}").body
    assert older["data"][0]["id"] < page["data"][-1]["id"]
    assert admin.call("GET", "/audit/verify").body == {"ok": True, "first_broken_id": None}
    admin.db.execute(
        "INSERT INTO usage (trace_id, ts, api, endpoint, model, stream, status, input_tokens, "
        "output_tokens, cached_tokens, estimated, latency_ms) "
        "VALUES ('t1', '2025-01-02T00:00:00.000Z', 'openai', 'chat', 'oa', 0, 200, 1, 2, 0, 0, 3)"
    )
    rows = admin.call("GET", "/usage?since=2025-01-01&until=2025-01-03T00:00:00%2B00:00").body
    assert [r["trace_id"] for r in rows["data"]] == ["t1"] and rows["data"][0]["stream"] is False
    assert admin.call("GET", "/usage?model=other").body["data"] == []
    _error(admin.call("GET", "/usage?since=yesterday"), 400, "invalid_request")
    _error(admin.call("GET", "/audit?limit=0"), 400, "invalid_request")
    status = admin.call("GET", "/status").body
    assert status["schema_version"] == SCHEMA_VERSION and status["counts"]["admin_tokens"] >= 3


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_request"),
        (b'{"name": 5}', "invalid_type"),
        (b'{"name": "x", "colour": "red"}', "invalid_request"),
        (b"{}", "missing_required_parameter"),
    ],
)
def test_bad_bodies(admin: Admin, raw: bytes, code: str) -> None:
    err = _error(admin.call("POST", "/departments", raw=raw), 400, code)
    assert "Traceback" not in str(err)


def test_http_errors_use_the_envelope(admin: Admin) -> None:
    _error(admin.call("GET", "/nothing-here"), 404, "not_found")
    err = _error(admin.call("PUT", "/departments"), 405, "method_not_allowed")
    assert "GET" in str(err["message"]) and "POST" in str(err["message"])
    big = b'{"description": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    _error(admin.call("POST", "/departments", raw=big), 413, "request_too_large")
    err = _error(admin.call("PATCH", "/keys/key_x", {"project": "p"}), 400, "invalid_request")
    assert err["details"] == {"param": "project"}
