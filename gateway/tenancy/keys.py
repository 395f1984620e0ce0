"""Gateway keys: issued to a project (and optionally a user), shown once, stored as a hash.

Lifecycle: active ⇄ disabled → revoked → deleted. Rotation issues a new secret and keeps the
old one's hash in `prev_hash` until `prev_expires_at`, so clients can switch without downtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlite_utils

from appliance.errors import ConflictError, NotFoundError
from appliance.store import transaction, utcnow
from gateway.catalog import bump_version, check_name
from gateway.errors import InvalidRequest
from gateway.tenancy import _checks
from gateway.tenancy.audit import record
from gateway.tenancy.secrets import display_prefix, hash_secret, new_key_id, new_key_secret

MAX_GRACE_SECONDS = 30 * 86400
EDITABLE = {"name", "user", "models", "cidrs", "expires_at", "rpm", "tpm", "budget_micros", "tags"}
_JSON_COLUMNS = ("models", "cidrs", "tags")
_HIDDEN = ("hash", "prev_hash")


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as callers see it: no hashes, JSON columns as lists."""
    out = {k: v for k, v in row.items() if k not in _HIDDEN}
    for column in _JSON_COLUMNS:
        if isinstance(out.get(column), str):
            out[column] = orjson.loads(out[column])
    return out


def _stored(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _checks.json_list(v) if k in _JSON_COLUMNS else v for k, v in row.items()}


def _checked(db: sqlite_utils.Database, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the editable fields present in `fields`."""
    out: dict[str, Any] = {}
    for field, value in fields.items():
        if field == "name":
            check_name("key name", _checks.text("name", value, 128))
            out[field] = value
        elif field == "user":
            if value is not None:
                _checks.exists(db, "users", "name", _checks.text("user", value, 128), "user")
            out[field] = value
        elif field in ("rpm", "tpm", "budget_micros"):
            out[field] = _checks.limit(field, value)
        elif field == "expires_at":
            out[field] = _checks.future_utc(field, value)
        else:
            out[field] = {"models": _checks.models, "cidrs": _checks.cidrs, "tags": _checks.tags}[
                field
            ](value)
    return out


def _load(db: sqlite_utils.Database, key_id: str) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM keys WHERE id = ?", [key_id]))
    if not rows:
        raise NotFoundError(f"no key with id {key_id!r}")
    return rows[0]


def create_key(
    db: sqlite_utils.Database,
    actor: str,
    *,
    name: str,
    project: str,
    user: str | None = None,
    models: list[str] | None = None,
    cidrs: list[str] | None = None,
    expires_at: str | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    budget_micros: int | None = None,
    tags: list[str] | None = None,
) -> tuple[dict[str, Any], str]:
    """Issue a key; returns its row and the secret, which is not stored and never shown again."""
    fields = {
        "name": name,
        "user": user,
        "models": models or [],
        "cidrs": cidrs or [],
        "expires_at": expires_at,
        "rpm": rpm,
        "tpm": tpm,
        "budget_micros": budget_micros,
        "tags": tags or [],
    }
    secret = new_key_secret()
    now = utcnow()
    with transaction(db):
        _checks.exists(db, "projects", "name", _checks.text("project", project, 128), "project")
        row = {
            "id": new_key_id(),
            "project": project,
            **_checked(db, fields),
            "prefix": display_prefix(secret),
            "hash": hash_secret(secret),
            "prev_hash": None,
            "prev_expires_at": None,
            "status": "active",
            "created_at": now,
            "updated_at": now,
            "rotated_at": None,
            "revoked_at": None,
        }
        db.table("keys").insert(_stored(row))
        record(db, actor, "create", "key", row["id"], None, _public(row))
        bump_version(db)
    return _public(row), secret


def _change(
    db: sqlite_utils.Database, actor: str, action: str, key_id: str, new: dict[str, Any]
) -> dict[str, Any]:
    """Apply `new` to a key inside the caller's transaction, audited."""
    before = _load(db, key_id)
    after = {**before, **_stored(new), "updated_at": utcnow()}
    db.table("keys").update(key_id, after)
    record(db, actor, action, "key", key_id, _public(before), _public(after))
    bump_version(db)
    return _public(after)


def _not_revoked(row: dict[str, Any], doing: str) -> None:
    if row["status"] == "revoked":
        raise ConflictError(f"key {row['id']} is revoked and cannot be {doing}; issue a new key")


def update_key(
    db: sqlite_utils.Database, actor: str, key_id: str, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """Change a key's editable fields (not its project or secret); null clears a limit."""
    _checks.only(changes, EDITABLE)
    with transaction(db):
        _not_revoked(_load(db, key_id), "changed")
        return _change(db, actor, "update", key_id, _checked(db, changes))


def rotate_key(
    db: sqlite_utils.Database, actor: str, key_id: str, grace_seconds: int = 86400
) -> tuple[dict[str, Any], str]:
    """A new secret; the old one keeps working for `grace_seconds` (0: stops at once)."""
    grace = _checks.limit("grace_seconds", grace_seconds)
    if grace is None or grace > MAX_GRACE_SECONDS:
        raise InvalidRequest(
            f"'grace_seconds' must be between 0 and {MAX_GRACE_SECONDS}", param="grace_seconds"
        )
    secret = new_key_secret()
    with transaction(db):
        row = _load(db, key_id)
        _not_revoked(row, "rotated")
        until = datetime.now(UTC) + timedelta(seconds=grace)
        new = {
            "hash": hash_secret(secret),
            "prefix": display_prefix(secret),
            "prev_hash": row["hash"] if grace else None,
            "prev_expires_at": (
                until.isoformat(timespec="milliseconds").replace("+00:00", "Z") if grace else None
            ),
            "rotated_at": utcnow(),
        }
        return _change(db, actor, "rotate", key_id, new), secret


def _set_status(db: sqlite_utils.Database, actor: str, key_id: str, status: str) -> dict[str, Any]:
    action = {"active": "enable", "disabled": "disable"}[status]
    with transaction(db):
        row = _load(db, key_id)
        _not_revoked(row, action + "d")
        if row["status"] == status:
            return _public(row)
        return _change(db, actor, action, key_id, {"status": status})


def disable_key(db: sqlite_utils.Database, actor: str, key_id: str) -> dict[str, Any]:
    """Stop a key from working, reversibly (e.g. while a leak is investigated)."""
    return _set_status(db, actor, key_id, "disabled")


def enable_key(db: sqlite_utils.Database, actor: str, key_id: str) -> dict[str, Any]:
    """Let a disabled key work again; a revoked key stays revoked."""
    return _set_status(db, actor, key_id, "active")


def revoke_key(db: sqlite_utils.Database, actor: str, key_id: str) -> dict[str, Any]:
    """End a key for good, its previous secret included; the row stays for the ledger."""
    with transaction(db):
        _not_revoked(_load(db, key_id), "revoked again")
        new = {
            "status": "revoked",
            "revoked_at": utcnow(),
            "prev_hash": None,
            "prev_expires_at": None,
        }
        return _change(db, actor, "revoke", key_id, new)


def delete_key(db: sqlite_utils.Database, actor: str, key_id: str) -> None:
    """Remove a revoked key's row (revoking first makes deletion a deliberate two-step act)."""
    with transaction(db):
        row = _load(db, key_id)
        if row["status"] != "revoked":
            raise ConflictError(f"key {key_id} is {row['status']}; revoke it before deleting it")
        db.execute("DELETE FROM keys WHERE id = ?", [key_id])
        record(db, actor, "delete", "key", key_id, _public(row), None)
        bump_version(db)


def get_key(db: sqlite_utils.Database, key_id: str) -> dict[str, Any]:
    """One key, without its hashes."""
    return _public(_load(db, key_id))


def list_keys(
    db: sqlite_utils.Database, project: str | None = None, user: str | None = None
) -> list[dict[str, Any]]:
    """Keys, oldest first, optionally of one project and/or user; never with hashes."""
    where: list[str] = []
    args: list[Any] = []
    if project is not None:
        where.append("project = ?")
        args.append(project)
    if user is not None:
        where.append("user = ?")
        args.append(user)
    sql = "SELECT * FROM keys" + (" WHERE " + " AND ".join(where) if where else "")
    return [_public(r) for r in db.query(sql + " ORDER BY created_at, id", args)]
