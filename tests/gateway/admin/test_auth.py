"""Who may call what: every role against every route, bad credentials, the UNIX socket."""

from __future__ import annotations

import http.client
import os
import re
import socket
import stat
from pathlib import Path

import pytest

from gateway.admin import start_admin_socket
from gateway.admin.routes import ROUTES, Route
from gateway.tenancy.audit import list_audit
from gateway.tenancy.store import ROLES
from tests.gateway.admin.conftest import Admin

# What each role may do, stated independently of the route table it checks.
EXPECTED = {
    "admin": lambda r: True,
    # verifying the audit chains changes nothing: auditors may POST it; backups hold the
    # box's secrets (encrypted): admins only
    "auditor": lambda r: (
        (r.method == "GET" and not r.path.startswith("/system/backups"))
        or (r.method, r.path) in {("POST", "/audit/verify")}
    ),
    "finance": lambda r: (
        (
            r.method == "GET"
            and re.match(
                r"/(departments|projects|users|usage|prices|budgets|alerts|openapi\.json)\b",
                r.path,
            )
            is not None
        )
        # spend reports and outcomes: finance reads them and records business value
        or (r.method == "GET" and re.match(r"/(reports|outcomes)\b", r.path) is not None)
        or (r.method == "POST" and r.path == "/outcomes")
        # ledger records are usage; a request's timeline also shows admin events, so not that
        or (r.method == "GET" and r.path == "/audit/requests")
    ),
}


def _path(route: Route) -> str:
    return re.sub(r"\{\w+\}", "no-such-object", route.path)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_each_role_against_each_route(admin: Admin, route: Route, role: str) -> None:
    reply = admin.call(route.method, _path(route), role=role, raw=b"{}")
    allowed = EXPECTED[role](route)
    assert (role in route.roles) == allowed
    if allowed:
        # A factory reset is refused over TCP whatever the role (only at the box).
        local_only = reply.status == 403 and reply.body["error"]["code"] == "local_only"
        assert reply.status not in (401, 403, 500) or local_only, reply.raw
    else:
        assert reply.status == 403 and reply.body["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer aigw-admin-unknown", "Basic dXNlcjpwYXNz", "bearer  "],
)
def test_missing_or_unknown_credentials_get_401(admin: Admin, header: str | None) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", admin.port, timeout=10)
    conn.request(
        "GET", "/admin/v1/departments", headers={"Authorization": header} if header else {}
    )
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 401 and b'"unauthenticated"' in body
    assert resp.getheader("WWW-Authenticate", "").startswith("Bearer")


def test_the_socket_is_private_and_trusts_the_own_uid(admin: Admin) -> None:
    mode = os.stat(admin.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    reply = admin.call("POST", "/departments", {"name": "via-socket"}, role=None, unix=True)
    assert reply.status == 201
    row = list_audit(admin.db, object_type="department", limit=1)[0]
    assert row["actor"] == f"local:uid={os.getuid()}"
    # A token over the socket still names its holder, and a bad one is refused.
    reply = admin.call("GET", "/status", role="finance", unix=True)
    assert reply.status == 403
    reply = admin.call("GET", "/status", token="aigw-admin-wrong", unix=True)
    assert reply.status == 401
    # Over TCP the same request without a token is refused.
    assert admin.call("GET", "/status", role=None).status == 401


def test_a_stale_socket_is_replaced_and_other_files_are_left_alone(
    admin: Admin, tmp_path: Path
) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "admin.sock"))
    stale.close()  # the file stays behind, as after a crash
    assert admin.runner is not None
    site = admin.lt.run(start_admin_socket(admin.runner, tmp_path))
    try:
        assert stat.S_IMODE(os.stat(tmp_path / "admin.sock").st_mode) == 0o600
    finally:
        admin.lt.run(site.stop())
    other = tmp_path / "other"
    other.mkdir()
    (other / "admin.sock").write_text("not a socket")
    with pytest.raises(FileExistsError):
        admin.lt.run(start_admin_socket(admin.runner, other))
    assert (other / "admin.sock").read_text() == "not a socket"
