"""Admin API tokens: a bearer secret with one role, shown once and stored as a hash."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from appliance.errors import ConflictError, NotFoundError
from appliance.store import transaction, utcnow
from gateway.catalog import bump_version, check_name
from gateway.errors import InvalidRequest
from gateway.tenancy import _checks
from gateway.tenancy.audit import record
from gateway.tenancy.secrets import (
    display_prefix,
    hash_secret,
    new_admin_token,
    new_admin_token_id,
)

# admin: everything; auditor: read everything; finance: usage and the organisation for chargeback.
ROLES = ("admin", "auditor", "finance")


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "hash"}


def _load(db: sqlite_utils.Database, token_id: str) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM admin_tokens WHERE id = ?", [token_id]))
    if not rows:
        raise NotFoundError(f"no admin token with id {token_id!r}")
    return rows[0]


def create_admin_token(
    db: sqlite_utils.Database, actor: str, name: str, role: str
) -> tuple[dict[str, Any], str]:
    """Issue a token; returns its row and the secret, which is never shown again."""
    check_name("token name", _checks.text("name", name, 128))
    if role not in ROLES:
        raise InvalidRequest(
            f"role {role!r} is unknown; use one of {', '.join(ROLES)}", param="role"
        )
    secret = new_admin_token()
    token_id = new_admin_token_id()
    row: dict[str, Any] = {
        "id": token_id,
        "name": name,
        "role": role,
        "prefix": display_prefix(secret),
        "hash": hash_secret(secret),
        "created_at": utcnow(),
        "revoked_at": None,
    }
    with transaction(db):
        db.table("admin_tokens").insert(row)
        record(db, actor, "create", "admin_token", token_id, None, _public(row))
        bump_version(db)
    return _public(row), secret


def revoke_admin_token(db: sqlite_utils.Database, actor: str, token_id: str) -> dict[str, Any]:
    """Stop a token from working, for good."""
    with transaction(db):
        before = _load(db, token_id)
        if before["revoked_at"] is not None:
            raise ConflictError(f"admin token {token_id} is already revoked")
        after = {**before, "revoked_at": utcnow()}
        db.table("admin_tokens").update(token_id, after)
        record(db, actor, "revoke", "admin_token", token_id, _public(before), _public(after))
        bump_version(db)
    return _public(after)


def get_admin_token(db: sqlite_utils.Database, token_id: str) -> dict[str, Any]:
    """One token, without its hash."""
    return _public(_load(db, token_id))


def list_admin_tokens(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """All tokens, revoked ones included, oldest first; never with hashes."""
    return [_public(r) for r in db.query("SELECT * FROM admin_tokens ORDER BY created_at, id")]


def find_admin_token(db: sqlite_utils.Database, secret: str) -> dict[str, Any] | None:
    """The live token whose secret this is, or None (unknown or revoked)."""
    rows = list(
        db.query(
            "SELECT * FROM admin_tokens WHERE hash = ? AND revoked_at IS NULL",
            [hash_secret(secret)],
        )
    )
    return _public(rows[0]) if rows else None
