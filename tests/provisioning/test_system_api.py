"""The system endpoint and the one-time first admin token, on a real gateway."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.config import parse_config
from gateway.tenancy.audit import list_audit
from provisioning.firstboot import provision
from provisioning.tls import cert_fingerprint
from tests.gateway.admin.conftest import Admin


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[Admin, str]]:
    result = provision(parse_config({"state": {"dir": str(tmp_path)}}))
    assert result.admin_token
    admin = Admin(tmp_path)
    yield admin, result.admin_token
    admin.stop()


def test_system_report(box: tuple[Admin, str]) -> None:
    admin, token = box
    reply = admin.call("GET", "/system", role="auditor")
    assert reply.status == 200
    body = reply.body
    ident = (admin.state_dir / "identity.json").read_text()
    assert body["appliance_id"] in ident and body["hostname"].startswith("aigw-")
    assert body["provisioned_at"] and body["first_boot"]["identity"] == "created"
    fp = cert_fingerprint(admin.cfg.tls_cert_file.read_bytes())
    tls = body["tls"]
    assert tls["fingerprint"] == fp and tls["self_signed"] and not tls["expired"]
    assert tls["enabled"] is False and 800 < tls["days_left"] <= 825
    assert body["urls"] == {"https": None, "http": f"http://127.0.0.1:{admin.port}"}
    assert body["mdns"] == {"enabled": False, "instance": None}
    assert token not in reply.raw.decode()
    assert admin.call("GET", "/system", role="finance").status == 403
    # No HTTPS here: a reload says so.
    reply = admin.call("POST", "/system/tls/reload")
    assert reply.status == 409 and reply.body["error"]["code"] == "tls_disabled"


def test_first_token_once_and_only_over_the_socket(box: tuple[Admin, str]) -> None:
    admin, token = box
    token_file = admin.state_dir / "first-admin-token"
    # Over TCP, even with an admin token, it is not given (and its existence not told).
    reply = admin.call("POST", "/system/first-token")
    assert reply.status == 404 and "local admin socket" in reply.body["error"]["message"]
    assert token_file.exists()
    # Two consoles at once: exactly one gets it.
    replies = []

    def take() -> None:
        replies.append(admin.call("POST", "/system/first-token", role=None, unix=True))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status for r in replies) == [200, 404, 404, 404]
    [got] = [r.body["token"] for r in replies if r.status == 200]
    assert got == token and not token_file.exists()
    assert not list(admin.state_dir.glob(".first-admin-token*"))
    later = admin.call("POST", "/system/first-token", role=None, unix=True)
    assert later.status == 404 and "already read" in later.body["error"]["message"]
    # The token works, and reading it was audited (without the token).
    assert admin.call("GET", "/status", token=token).status == 200
    rows = list_audit(admin.db, object_type="first_admin_token", limit=10)
    assert len(rows) == 1 and rows[0]["actor"].startswith("local:uid=")
    assert token not in repr(admin.db.execute("SELECT * FROM audit").fetchall())
