"""The last removable medium's result through the admin API, as the media service kept it."""

from __future__ import annotations

from provisioning.media import MediaResult, save_result
from tests.gateway.admin.conftest import Admin


def test_no_medium_then_the_last_one(admin: Admin) -> None:
    reply = admin.call("GET", "/media/last", role="auditor")
    assert reply.status == 200 and reply.body == {"result": None}
    result = MediaResult("/dev/sdb1", "bundles", "MODELS", uuid="1234-ABCD", seed_sha256="ff")
    result.lines.append("+ model tiny imported from tiny.aigwmodel, signed by vendor")
    result.error = "1 bundle(s) refused"
    save_result(admin.cfg, result)
    body = admin.call("GET", "/media/last").body["result"]
    assert body["device"] == "/dev/sdb1" and body["kind"] == "bundles"
    assert body["ok"] is False and body["error"] == "1 bundle(s) refused"
    assert body["lines"] == ["+ model tiny imported from tiny.aigwmodel, signed by vendor"]
    assert "uuid" not in body and "seed_sha256" not in body
    assert admin.call("GET", "/media/last", role="finance").status == 403


def test_a_damaged_result_file_reads_as_none(admin: Admin) -> None:
    path = admin.cfg.state_dir / "media" / "last-result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    assert admin.call("GET", "/media/last").body == {"result": None}
