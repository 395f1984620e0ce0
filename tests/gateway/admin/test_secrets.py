"""Planted secrets never come back: not in any admin response after creation, not in the audit
table, not in error messages."""

from __future__ import annotations

import hashlib
import re

from gateway.admin.routes import ROUTES
from tests.gateway.admin.conftest import Admin


def _plant(admin: Admin) -> list[str]:
    """Create a key (then rotate it) and an admin token; returns each secret and its hash."""
    admin.call("POST", "/departments", {"name": "sec-dept"})
    admin.call("POST", "/projects", {"name": "sec-proj", "department": "sec-dept"})
    created = admin.call("POST", "/keys", {"name": "sec-key", "project": "sec-proj"}).body
    rotated = admin.call("POST", f"/keys/{created['id']}/rotate", {"grace_seconds": 600}).body
    token = admin.call("POST", "/admin-tokens", {"name": "sec-tok", "role": "finance"}).body
    secrets = [created["secret"], rotated["secret"], token["token"], *admin.tokens.values()]
    return secrets + [hashlib.sha256(s.encode()).hexdigest() for s in secrets]


def test_no_secret_comes_back(admin: Admin) -> None:
    planted = _plant(admin)
    key_id = admin.call("GET", "/keys?project=sec-proj").body["data"][0]["id"]
    token_id = next(
        t["id"] for t in admin.call("GET", "/admin-tokens").body["data"] if t["name"] == "sec-tok"
    )
    ids = {"id": key_id, "name": "sec-proj", "alias": "none", "trace_id": "none"}
    replies = []
    for route in ROUTES:
        if route.method != "GET":
            continue
        path = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], route.path)
        if path.startswith("/admin-tokens/"):
            path = path.replace(key_id, token_id)
        for role in ("admin", "auditor", "finance"):
            replies.append(admin.call("GET", path, role=role))
    # Errors, including ones that quote input, and a request carrying a secret as a token.
    replies.append(admin.call("POST", "/keys", {"name": "x", "project": "sec-proj", "rpm": -1}))
    replies.append(admin.call("GET", "/status", token=planted[0]))
    replies.append(admin.call("POST", f"/keys/{key_id}/rotate", {"grace_seconds": -5}))
    replies.append(admin.call("PATCH", f"/keys/{key_id}", {"hash": "x"}))
    assert sum(r.status == 200 for r in replies) > 20
    for reply in replies:
        for secret in planted:
            assert secret.encode() not in reply.raw, reply.raw[:200]
    audit_dump = repr(admin.db.execute("SELECT * FROM audit").fetchall())
    for secret in planted:
        assert secret not in audit_dump
