"""Budgets, suspensions and alerts in SQLite, for the admin API and the CLI.

Like the tenancy store: every change takes the actor that asked, writes an audit row and bumps
the change counter in one transaction, so the running gateway reloads its in-memory book
within a second (its spent amounts carry over; see `budgets.BudgetBook.load`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import orjson
import sqlite_utils

from appliance.errors import ConflictError, NotFoundError
from appliance.store import transaction, utcnow
from gateway.catalog import bump_version
from gateway.errors import InvalidRequest
from gateway.governance.budgets import DEFAULT_THRESHOLDS, LEVELS
from gateway.governance.periods import PERIODS
from gateway.tenancy import _checks
from gateway.tenancy.audit import record

ENFORCEMENTS = ("hard", "soft")
MAX_THRESHOLDS = 10
_TARGETS = {
    "department": ("departments", "name"),
    "project": ("projects", "name"),
    "user": ("users", "name"),
    "key": ("keys", "id"),
}


# --- budgets --------------------------------------------------------------------------------


def _public_budget(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "hard"}
    out["enforcement"] = "hard" if row["hard"] else "soft"
    out["thresholds"] = orjson.loads(row["thresholds"])
    return out


def _one_of(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidRequest(f"{field!r} must be one of {', '.join(allowed)}", param=field)
    return str(value)


def _thresholds(value: Any) -> str:
    """Percentages of the limit that raise an alert: 1-1000, at most ten, kept sorted."""
    ok = isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1000 for v in value
    )
    if not ok or len(value) > MAX_THRESHOLDS:
        raise InvalidRequest(
            f"'thresholds' must be a list of at most {MAX_THRESHOLDS} percentages, 1-1000",
            param="thresholds",
        )
    return orjson.dumps(sorted(set(value))).decode()


def _limit(value: Any) -> int:
    checked = _checks.limit("limit_micros", value)
    if checked is None:
        raise InvalidRequest("'limit_micros' must be a non-negative integer", param="limit_micros")
    return checked


def create_budget(
    db: sqlite_utils.Database,
    actor: str,
    *,
    level: str,
    target: str,
    period: str,
    limit_micros: int,
    enforcement: str = "hard",
    thresholds: list[int] | None = None,
) -> dict[str, Any]:
    """A new budget on an existing department, project, user or key."""
    budget_id = "bud_" + secrets.token_hex(6)
    row: dict[str, Any] = {
        "id": budget_id,
        "level": _one_of("level", level, LEVELS),
        "target": _checks.text("target", target, 128),
        "period": _one_of("period", period, PERIODS),
        "limit_micros": _limit(limit_micros),
        "hard": int(_one_of("enforcement", enforcement, ENFORCEMENTS) == "hard"),
        "thresholds": _thresholds(list(DEFAULT_THRESHOLDS) if thresholds is None else thresholds),
    }
    table, column = _TARGETS[level]
    with transaction(db):
        _checks.exists(db, table, column, target, level)
        clash = db.execute(
            "SELECT id FROM budgets WHERE level = ? AND target = ? AND period = ?",
            [level, target, period],
        ).fetchone()
        if clash:
            raise ConflictError(f"{level} {target!r} already has a {period} budget ({clash[0]})")
        now = utcnow()
        row = {**row, "created_at": now, "updated_at": now}
        db.table("budgets").insert(row)
        record(db, actor, "create", "budget", budget_id, None, row)
        bump_version(db)
    return _public_budget(row)


def _budget_row(db: sqlite_utils.Database, budget_id: str) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM budgets WHERE id = ?", [budget_id]))
    if not rows:
        raise NotFoundError(f"no budget with id {budget_id!r}")
    return rows[0]


def get_budget(db: sqlite_utils.Database, budget_id: str) -> dict[str, Any]:
    """One budget."""
    return _public_budget(_budget_row(db, budget_id))


def list_budgets(
    db: sqlite_utils.Database, level: str | None = None, target: str | None = None
) -> list[dict[str, Any]]:
    """Budgets by level and target, optionally filtered."""
    where, args = [], []
    for column, value in (("level", level), ("target", target)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    sql = "SELECT * FROM budgets" + (" WHERE " + " AND ".join(where) if where else "")
    return [_public_budget(r) for r in db.query(sql + " ORDER BY level, target, period", args)]


def update_budget(
    db: sqlite_utils.Database, actor: str, budget_id: str, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """Change a budget's limit, enforcement or thresholds (what it covers is fixed: delete
    and create for another target or period). Spent amounts are kept."""
    _checks.only(changes, {"limit_micros", "enforcement", "thresholds"})
    new: dict[str, Any] = {}
    if "limit_micros" in changes:
        new["limit_micros"] = _limit(changes["limit_micros"])
    if "enforcement" in changes:
        new["hard"] = int(_one_of("enforcement", changes["enforcement"], ENFORCEMENTS) == "hard")
    if "thresholds" in changes:
        new["thresholds"] = _thresholds(changes["thresholds"])
    with transaction(db):
        before = _budget_row(db, budget_id)
        after = {**before, **new, "updated_at": utcnow()}
        db.table("budgets").update(budget_id, after)
        record(db, actor, "update", "budget", budget_id, before, after)
        bump_version(db)
    return _public_budget(after)


def delete_budget(db: sqlite_utils.Database, actor: str, budget_id: str) -> None:
    """Delete a budget (the ledger keeps what was spent)."""
    with transaction(db):
        before = _budget_row(db, budget_id)
        db.execute("DELETE FROM budgets WHERE id = ?", [budget_id])
        record(db, actor, "delete", "budget", budget_id, before, None)
        bump_version(db)


# --- suspensions ----------------------------------------------------------------------------


def suspend(db: sqlite_utils.Database, actor: str, level: str, target: str, reason: str) -> int:
    """Record a suspension (the breaker's); an active one for the same target is kept."""
    with transaction(db):
        found = db.execute(
            "SELECT id FROM suspensions WHERE level = ? AND target = ? AND lifted_at IS NULL",
            [level, target],
        ).fetchone()
        if found:
            return int(found[0])
        row = {"level": level, "target": target, "reason": reason, "created_at": utcnow()}
        cur = db.execute(
            "INSERT INTO suspensions (level, target, reason, created_at) VALUES (?, ?, ?, ?)",
            [level, target, reason, row["created_at"]],
        )
        suspension_id = int(cur.lastrowid or 0)
        record(db, actor, "create", "suspension", str(suspension_id), None, row)
        bump_version(db)
    return suspension_id


def active_suspensions(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Suspensions not lifted yet (what the hot path refuses)."""
    return list(db.query("SELECT * FROM suspensions WHERE lifted_at IS NULL ORDER BY id"))


def list_suspensions(db: sqlite_utils.Database, active: bool | None = None) -> list[dict[str, Any]]:
    """Suspensions, newest first; `active` True/False filters on whether they are lifted."""
    where = {None: "", True: " WHERE lifted_at IS NULL", False: " WHERE lifted_at IS NOT NULL"}
    return list(db.query(f"SELECT * FROM suspensions{where[active]} ORDER BY id DESC"))


def lift_suspension(db: sqlite_utils.Database, actor: str, suspension_id: int) -> dict[str, Any]:
    """Lift a suspension: the key or project may spend again at the next reload."""
    with transaction(db):
        rows = list(db.query("SELECT * FROM suspensions WHERE id = ?", [suspension_id]))
        if not rows:
            raise NotFoundError(f"no suspension with id {suspension_id}")
        before = rows[0]
        if before["lifted_at"] is not None:
            raise ConflictError(f"suspension {suspension_id} was lifted at {before['lifted_at']}")
        after = {**before, "lifted_at": utcnow(), "lifted_by": actor}
        db.table("suspensions").update(suspension_id, after)
        record(db, actor, "lift", "suspension", str(suspension_id), before, after)
        bump_version(db)
    return after


# --- alerts ---------------------------------------------------------------------------------


def list_alerts(
    db: sqlite_utils.Database,
    *,
    kind: str | None = None,
    severity: str | None = None,
    acknowledged: bool | None = None,
    since: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Alerts, newest first, filtered; each with its webhook deliveries."""
    where: list[str] = []
    args: list[Any] = []
    for sql, value in (("kind = ?", kind), ("severity = ?", severity), ("ts >= ?", since)):
        if value is not None:
            where.append(sql)
            args.append(value)
    if acknowledged is not None:
        where.append(f"acknowledged_at IS {'NOT ' if acknowledged else ''}NULL")
    if before_id is not None:
        where.append("id < ?")
        args.append(before_id)
    sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
    rows = db.query(sql + " ORDER BY id DESC LIMIT ?", [*args, limit])
    return [_public_alert(db, r) for r in rows]


def _public_alert(db: sqlite_utils.Database, row: dict[str, Any]) -> dict[str, Any]:
    deliveries = list(
        db.query(
            "SELECT webhook_id, attempts, status, next_at, last_error FROM alert_deliveries "
            "WHERE alert_id = ? ORDER BY webhook_id",
            [row["id"]],
        )
    )
    details = orjson.loads(row["details"]) if row["details"] else {}
    return {**row, "details": details, "deliveries": deliveries}


def get_alert(db: sqlite_utils.Database, alert_id: int) -> dict[str, Any]:
    """One alert with its deliveries."""
    rows = list(db.query("SELECT * FROM alerts WHERE id = ?", [alert_id]))
    if not rows:
        raise NotFoundError(f"no alert with id {alert_id}")
    return _public_alert(db, rows[0])


def acknowledge_alert(db: sqlite_utils.Database, actor: str, alert_id: int) -> dict[str, Any]:
    """Mark an alert as seen (acknowledging twice keeps the first acknowledgement)."""
    with transaction(db):
        before = get_alert(db, alert_id)
        if before["acknowledged_at"] is None:
            db.execute(
                "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
                [utcnow(), actor, alert_id],
            )
            record(db, actor, "acknowledge", "alert", str(alert_id), None, {"id": alert_id})
    return get_alert(db, alert_id)
