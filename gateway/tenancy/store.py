"""Departments, projects and users: who spends, on what, in which part of the company.

Every write takes the `actor` that asked for it, records an audit row and bumps the shared
version counter in the same transaction, so the trail and the running gateway never miss a
change. Keys and admin tokens live in their own modules and are re-exported here, so callers
have one place to import the tenancy store from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlite_utils

from appliance.errors import ConflictError, NotFoundError
from appliance.store import transaction, utcnow
from gateway.catalog import bump_version, check_name
from gateway.errors import InvalidRequest
from gateway.pricing.policy import UNPRICED_POLICIES
from gateway.tenancy import _checks
from gateway.tenancy.audit import record
from gateway.tenancy.keys import (
    create_key,
    delete_key,
    disable_key,
    enable_key,
    get_key,
    list_keys,
    revoke_key,
    rotate_key,
    update_key,
)
from gateway.tenancy.tokens import (
    ROLES,
    create_admin_token,
    find_admin_token,
    get_admin_token,
    list_admin_tokens,
    revoke_admin_token,
)

__all__ = [
    "ROLES",
    "create_admin_token",
    "create_department",
    "create_key",
    "create_project",
    "create_user",
    "delete_department",
    "delete_key",
    "delete_project",
    "delete_user",
    "disable_key",
    "enable_key",
    "find_admin_token",
    "get_admin_token",
    "get_department",
    "get_key",
    "get_project",
    "get_user",
    "list_admin_tokens",
    "list_departments",
    "list_keys",
    "list_projects",
    "list_users",
    "revoke_admin_token",
    "revoke_key",
    "rotate_key",
    "update_department",
    "update_key",
    "update_project",
    "update_user",
]


# Requests and tokens per minute; null clears a limit (see gateway.governance.ratelimit).
RATE_LIMITS = frozenset({"rpm", "tpm"})


def _rate_limits(changes: Mapping[str, Any]) -> dict[str, int | None]:
    """The rpm/tpm among `changes`, checked."""
    return {k: _checks.limit(k, v) for k, v in changes.items() if k in RATE_LIMITS}


def _one(db: sqlite_utils.Database, table: str, name: str, what: str) -> dict[str, Any]:
    rows = list(db.query(f"SELECT * FROM {table} WHERE name = ?", [name]))
    if not rows:
        raise NotFoundError(f"no {what} named {name!r}")
    return rows[0]


def _create(
    db: sqlite_utils.Database, actor: str, table: str, what: str, row: dict[str, Any]
) -> dict[str, Any]:
    """Insert a new named row; the caller has validated its fields."""
    with transaction(db):
        if db.execute(f"SELECT 1 FROM {table} WHERE name = ?", [row["name"]]).fetchone():
            raise ConflictError(f"{what} {row['name']!r} already exists")
        if row.get("department") is not None:
            _checks.exists(db, "departments", "name", row["department"], "department")
        now = utcnow()
        row = {**row, "created_at": now, "updated_at": now}
        db.table(table).insert(row)
        record(db, actor, "create", what, row["name"], None, row)
        bump_version(db)
    return row


def _update(
    db: sqlite_utils.Database, actor: str, table: str, what: str, name: str, new: dict[str, Any]
) -> dict[str, Any]:
    with transaction(db):
        before = _one(db, table, name, what)
        if new.get("department") is not None:
            _checks.exists(db, "departments", "name", new["department"], "department")
        after = {**before, **new, "updated_at": utcnow()}
        db.table(table).update(name, after)
        record(db, actor, "update", what, name, before, after)
        bump_version(db)
    return after


def _delete(
    db: sqlite_utils.Database, actor: str, table: str, what: str, name: str, users: list[str]
) -> None:
    """Delete a named row unless other objects still refer to it (`users`: SQL counting them)."""
    with transaction(db):
        before = _one(db, table, name, what)
        for sql in users:
            count, kind = db.execute(sql, [name]).fetchone()
            if count:
                raise ConflictError(
                    f"{what} {name!r} still has {count} {kind}; move or delete them first"
                )
        db.execute(f"DELETE FROM {table} WHERE name = ?", [name])
        record(db, actor, "delete", what, name, before, None)
        bump_version(db)


# Departments


def create_department(
    db: sqlite_utils.Database, actor: str, *, name: str, description: str = ""
) -> dict[str, Any]:
    """A new department: the top of the chargeback tree."""
    check_name("department name", name)
    row = {"name": name, "description": _checks.text("description", description)}
    return _create(db, actor, "departments", "department", row)


def update_department(
    db: sqlite_utils.Database, actor: str, name: str, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """Change a department's description or rate limits (names are keys of the ledger,
    never renamed)."""
    _checks.only(changes, {"description", *RATE_LIMITS})
    new: dict[str, Any] = {
        k: _checks.text(k, v) for k, v in changes.items() if k not in RATE_LIMITS
    }
    new.update(_rate_limits(changes))
    return _update(db, actor, "departments", "department", name, new)


def delete_department(db: sqlite_utils.Database, actor: str, name: str) -> None:
    """Delete a department that has no projects and no users."""
    _delete(
        db,
        actor,
        "departments",
        "department",
        name,
        [
            "SELECT count(*), 'project(s)' FROM projects WHERE department = ?",
            "SELECT count(*), 'user(s)' FROM users WHERE department = ?",
        ],
    )


def get_department(db: sqlite_utils.Database, name: str) -> dict[str, Any]:
    """One department."""
    return _one(db, "departments", name, "department")


def list_departments(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """All departments, by name."""
    return list(db.query("SELECT * FROM departments ORDER BY name"))


# Projects


def create_project(
    db: sqlite_utils.Database, actor: str, *, name: str, department: str, description: str = ""
) -> dict[str, Any]:
    """A new project in an existing department: keys belong to projects."""
    check_name("project name", name)
    row = {
        "name": name,
        "department": _checks.text("department", department, 128),
        "description": _checks.text("description", description),
    }
    return _create(db, actor, "projects", "project", row)


# Project switches stored as 0/1, and what retention keeps (see gateway.retention).
_PROJECT_FLAGS = ("context_trim", "sensitive_to_trusted")
_RETENTION = ("retention", "retention_days")
RETENTION_MODES = ("none", "metadata", "full")


def update_project(
    db: sqlite_utils.Database, actor: str, name: str, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """Change a project's description, move it to another department, set its rate limits
    (rpm, tpm), what it does with unpriced models (`unpriced`: auto, refuse or allow; see
    gateway.pricing.policy) or whether a prompt too long for a deployment is trimmed
    (`context_trim`: true or false; see gateway.routing.trim), whether a request in which a
    masking detector fired may go only to deployments trusted with confidential data
    (`sensitive_to_trusted`), and what content is kept (`retention`: none, metadata or full,
    for `retention_days`)."""
    _checks.only(
        changes,
        {"description", "department", "unpriced", *_PROJECT_FLAGS, *_RETENTION, *RATE_LIMITS},
    )
    new: dict[str, Any] = {
        k: _checks.text(k, v)
        for k, v in changes.items()
        if k not in RATE_LIMITS and k not in _PROJECT_FLAGS and k != "retention_days"
    }
    new.update(_rate_limits(changes))
    for flag in _PROJECT_FLAGS:
        if flag in changes:
            if not isinstance(changes[flag], bool):
                raise InvalidRequest(f"'{flag}' must be true or false", param=flag)
            new[flag] = int(changes[flag])
    if "retention" in new and new["retention"] not in RETENTION_MODES:
        raise InvalidRequest(
            f"'retention' must be one of {', '.join(RETENTION_MODES)}", param="retention"
        )
    if "retention_days" in changes:
        days = changes["retention_days"]
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
            raise InvalidRequest("'retention_days' must be 1 to 3650", param="retention_days")
        new["retention_days"] = days
    if "unpriced" in new and new["unpriced"] not in UNPRICED_POLICIES:
        raise InvalidRequest(
            f"'unpriced' must be one of {', '.join(UNPRICED_POLICIES)}", param="unpriced"
        )
    return _update(db, actor, "projects", "project", name, new)


def delete_project(db: sqlite_utils.Database, actor: str, name: str) -> None:
    """Delete a project that has no keys (revoked ones included: delete those first)."""
    _delete(
        db,
        actor,
        "projects",
        "project",
        name,
        ["SELECT count(*), 'key(s)' FROM keys WHERE project = ?"],
    )


def get_project(db: sqlite_utils.Database, name: str) -> dict[str, Any]:
    """One project."""
    return _one(db, "projects", name, "project")


def list_projects(db: sqlite_utils.Database, department: str | None = None) -> list[dict[str, Any]]:
    """Projects by name, optionally of one department."""
    if department is None:
        return list(db.query("SELECT * FROM projects ORDER BY name"))
    return list(db.query("SELECT * FROM projects WHERE department = ? ORDER BY name", [department]))


# Users


def create_user(
    db: sqlite_utils.Database,
    actor: str,
    *,
    name: str,
    email: str | None = None,
    department: str | None = None,
) -> dict[str, Any]:
    """A new user (a person keys can be issued to), optionally in a department."""
    check_name("user name", name)
    row = {
        "name": name,
        "email": _checks.email(email),
        "department": None if department is None else _checks.text("department", department, 128),
    }
    return _create(db, actor, "users", "user", row)


def update_user(
    db: sqlite_utils.Database, actor: str, name: str, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """Change a user's email, department or rate limits (null clears any of them)."""
    _checks.only(changes, {"email", "department", *RATE_LIMITS})
    new: dict[str, Any] = _rate_limits(changes)
    if "email" in changes:
        new["email"] = _checks.email(changes["email"])
    if "department" in changes:
        dept = changes["department"]
        new["department"] = None if dept is None else _checks.text("department", dept, 128)
    return _update(db, actor, "users", "user", name, new)


def delete_user(db: sqlite_utils.Database, actor: str, name: str) -> None:
    """Delete a user who holds no keys."""
    _delete(
        db, actor, "users", "user", name, ["SELECT count(*), 'key(s)' FROM keys WHERE user = ?"]
    )


def get_user(db: sqlite_utils.Database, name: str) -> dict[str, Any]:
    """One user."""
    return _one(db, "users", name, "user")


def list_users(db: sqlite_utils.Database, department: str | None = None) -> list[dict[str, Any]]:
    """Users by name, optionally of one department."""
    if department is None:
        return list(db.query("SELECT * FROM users ORDER BY name"))
    return list(db.query("SELECT * FROM users WHERE department = ? ORDER BY name", [department]))
