"""Routes in SQLite: the admin's writes (validated, audited, versioned) and their reads.

A route is written whole (`put_route` creates or replaces it with all its deployments), so a
route is never half-changed. Each write checks what the hot path relies on through
`build_route` and `parse_tiers`, records an audit row and bumps `settings.catalog_version` in
one transaction, so a running gateway reloads its router within a second.

A deployment keeps its id across rewrites while its provider and upstream model stay (health
and breaker state are keyed by id); tier rules are stored with `use` as positions (0 is the
first deployment), so a route reads the same on every box it is exported to.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import sqlite_utils

from appliance.errors import ConflictError, NotFoundError
from appliance.store import transaction, utcnow
from gateway.catalog import bump_version, check_name
from gateway.errors import InvalidRequest
from gateway.routing.model import Deployment, build_route, parse_tiers
from gateway.tenancy.audit import record
from gateway.tenancy.store import update_project

MAX_DEPLOYMENTS = 64
MAX_ATTEMPTS = 20
MAX_SECONDS = 3600.0
MAX_WEIGHT = 1_000_000
MAX_CONTEXT = 100_000_000
MAX_UPSTREAM = 256
# Deployment fields a caller may give, with their defaults.
DEPLOYMENT_DEFAULTS: dict[str, Any] = {
    "weight": 1,
    "params": {},
    "context_window": None,
    "tools": True,
    "vision": False,
    "json_mode": True,
    "confidential": False,
}
_FLAGS = ("tools", "vision", "json_mode", "confidential")
_DEPLOYMENT_FIELDS = ("provider", "upstream_model", *DEPLOYMENT_DEFAULTS)


def _public_deployment(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "provider": row["provider"],
        "upstream_model": row["upstream_model"],
        "position": row["position"],
        "weight": row["weight"],
        "params": orjson.loads(row["params"] or "{}"),
        "context_window": row["context_window"],
    }
    out.update({flag: bool(row[flag]) for flag in _FLAGS})
    return out


def _public(db: sqlite_utils.Database, row: Mapping[str, Any]) -> dict[str, Any]:
    deployments = db.query(
        "SELECT * FROM deployments WHERE route = ? ORDER BY position", [row["alias"]]
    )
    return {
        "alias": row["alias"],
        "strategy": row["strategy"],
        "deployments": [_public_deployment(d) for d in deployments],
        "fallback_alias": row["fallback_alias"],
        "tiers": orjson.loads(row["tiers"] or "[]"),
        "max_attempts": row["max_attempts"],
        "max_seconds": float(row["max_seconds"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _row(db: sqlite_utils.Database, alias: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM routes WHERE alias = ?", [alias]))
    return rows[0] if rows else None


def list_routes(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every route with its deployments, by alias."""
    return [_public(db, r) for r in db.query("SELECT * FROM routes ORDER BY alias")]


def get_route(db: sqlite_utils.Database, alias: str) -> dict[str, Any]:
    """One route with its deployments."""
    row = _row(db, alias)
    if row is None:
        raise NotFoundError(f"no route named {alias!r}")
    return _public(db, row)


# --- validation -----------------------------------------------------------------------------


def _bad(i: int, what: str) -> InvalidRequest:
    return InvalidRequest(f"deployment #{i}: {what}", param="deployments")


def _int(i: int, name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(i, f"{name!r} must be an integer from {low} to {high}, not {value!r}")
    return value


def _deployment(i: int, raw: Any) -> dict[str, Any]:
    """One deployment as given, checked, defaults filled in (no id or position yet)."""
    if not isinstance(raw, Mapping):
        raise _bad(i, "must be an object with provider and upstream_model")
    unknown = sorted(set(raw) - set(_DEPLOYMENT_FIELDS))
    if unknown:
        raise _bad(i, f"unknown field {unknown[0]!r}; use {', '.join(_DEPLOYMENT_FIELDS)}")
    d = {**DEPLOYMENT_DEFAULTS, **raw}
    for name in ("provider", "upstream_model"):
        value = d.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_UPSTREAM:
            raise _bad(i, f"{name!r} must be a non-empty string of at most {MAX_UPSTREAM}")
    d["weight"] = _int(i, "weight", d["weight"], 0, MAX_WEIGHT)
    if d["context_window"] is not None:
        d["context_window"] = _int(i, "context_window", d["context_window"], 1, MAX_CONTEXT)
    if not isinstance(d["params"], Mapping):
        raise _bad(i, "'params' must be an object of request parameters")
    try:
        d["params"] = orjson.loads(orjson.dumps(d["params"]))
    except orjson.JSONEncodeError as exc:
        raise _bad(i, f"'params' cannot be stored: {exc}") from None
    for flag in _FLAGS:
        if not isinstance(d[flag], bool):
            raise _bad(i, f"{flag!r} must be true or false")
    return d


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(f"{name!r} must be a number from {low:g} to {high:g}", param=name)
    return value


def _check_fallback(db: sqlite_utils.Database, alias: str, fallback: str) -> None:
    """The fallback exists (a route or a model) and following fallbacks never comes back."""
    seen, current = {alias}, fallback
    while True:
        if current in seen:
            raise InvalidRequest(
                f"route {alias!r}: fallback {fallback!r} leads back to {current!r} (a cycle)",
                param="fallback_alias",
            )
        seen.add(current)
        row = _row(db, current)
        if row is None:
            if (
                current == fallback
                and not db.execute("SELECT 1 FROM models WHERE alias = ?", [current]).fetchone()
            ):
                raise NotFoundError(
                    f"route {alias!r}: fallback {fallback!r} is neither a route nor a model"
                )
            return
        if row["fallback_alias"] is None:
            return
        current = row["fallback_alias"]


def _ids(given: Sequence[dict[str, Any]], old: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids for the new deployments: an old one's id where provider and model are the same."""
    free = list(old)
    ids = []
    for d in given:
        match = next(
            (
                o
                for o in free
                if (o["provider"], o["upstream_model"]) == (d["provider"], d["upstream_model"])
            ),
            None,
        )
        if match is not None:
            free.remove(match)
            ids.append(match["id"])
        else:
            ids.append("dep_" + secrets.token_hex(8))
    return ids


def _stored_tiers(raw: list[Any], deployments: Sequence[Deployment]) -> str:
    """The tiers as stored: as given (validated), `use` rewritten as positions."""
    parsed = parse_tiers(deployments[0].route, raw, deployments)
    position = {d.id: d.position for d in deployments}
    out = [
        {**item, "use": [position[i] for i in tier.use]}
        for item, tier in zip(raw, parsed, strict=True)
    ]
    return orjson.dumps(out).decode()


# --- writes ---------------------------------------------------------------------------------


def put_route(
    db: sqlite_utils.Database,
    actor: str,
    *,
    alias: str,
    strategy: str,
    deployments: Sequence[Any],
    fallback_alias: str | None = None,
    tiers: Sequence[Any] = (),
    max_attempts: int = 3,
    max_seconds: float = 30,
) -> dict[str, Any]:
    """Create or replace the route `alias` with these deployments (in priority order)."""
    check_name("route alias", alias)
    if not isinstance(deployments, Sequence) or isinstance(deployments, str) or not deployments:
        raise InvalidRequest(f"route {alias!r} needs at least one deployment", param="deployments")
    if len(deployments) > MAX_DEPLOYMENTS:
        raise InvalidRequest(
            f"a route may have at most {MAX_DEPLOYMENTS} deployments", param="deployments"
        )
    given = [_deployment(i, d) for i, d in enumerate(deployments, 1)]
    if strategy == "weighted" and not any(d["weight"] for d in given):
        raise InvalidRequest(
            f"route {alias!r}: a weighted route needs a deployment with a weight above 0",
            param="deployments",
        )
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
        raise InvalidRequest("'max_attempts' must be an integer", param="max_attempts")
    attempts = int(_number("max_attempts", max_attempts, 1, MAX_ATTEMPTS))
    seconds = float(_number("max_seconds", max_seconds, 0.001, MAX_SECONDS))
    if not isinstance(tiers, Sequence) or isinstance(tiers, str):
        raise InvalidRequest(f"route {alias!r}: tiers must be a list", param="tiers")
    with transaction(db):
        if db.execute("SELECT 1 FROM models WHERE alias = ?", [alias]).fetchone():
            raise ConflictError(
                f"{alias!r} is a model alias; remove the model before making it a route"
            )
        for i, d in enumerate(given, 1):
            if not db.execute("SELECT 1 FROM providers WHERE name = ?", [d["provider"]]).fetchone():
                raise NotFoundError(f"deployment #{i}: no provider named {d['provider']!r}")
        before_row = _row(db, alias)
        before = None if before_row is None else _public(db, before_row)
        ids = _ids(given, before["deployments"] if before else [])
        objs = [Deployment(id=ids[i], route=alias, position=i, **d) for i, d in enumerate(given)]
        stored_tiers = _stored_tiers(list(tiers), objs)
        build_route(
            alias,
            strategy,
            objs,
            fallback_alias=fallback_alias,
            tiers=stored_tiers,
            max_attempts=attempts,
            max_seconds=seconds,
        )
        if fallback_alias is not None:
            _check_fallback(db, alias, fallback_alias)
        now = utcnow()
        row = {
            "alias": alias,
            "strategy": strategy,
            "fallback_alias": fallback_alias,
            "tiers": stored_tiers,
            "max_attempts": attempts,
            "max_seconds": seconds,
            "created_at": before["created_at"] if before else now,
            "updated_at": now,
        }
        db.execute("DELETE FROM deployments WHERE route = ?", [alias])
        db.table("routes").upsert(row, pk="alias")
        for dep, d in zip(objs, given, strict=True):
            db.table("deployments").insert(
                {
                    **d,
                    "id": dep.id,
                    "route": alias,
                    "position": dep.position,
                    "params": orjson.dumps(d["params"]).decode(),
                    "created_at": now,
                }
            )
        after = _public(db, row)
        record(db, actor, "create" if before is None else "update", "route", alias, before, after)
        bump_version(db)
    return after


def delete_route(db: sqlite_utils.Database, actor: str, alias: str) -> None:
    """Delete a route and its deployments; refused while another route falls back to it."""
    with transaction(db):
        row = _row(db, alias)
        if row is None:
            raise NotFoundError(f"no route named {alias!r}")
        users = fallback_users(db, alias)
        if users:
            raise ConflictError(
                f"route {alias!r} is the fallback of route(s) {', '.join(users)}; change them first"
            )
        before = _public(db, row)
        db.execute("DELETE FROM deployments WHERE route = ?", [alias])
        db.execute("DELETE FROM routes WHERE alias = ?", [alias])
        record(db, actor, "delete", "route", alias, before, None)
        bump_version(db)


def fallback_users(db: sqlite_utils.Database, alias: str) -> list[str]:
    """The routes that fall back to `alias`, by alias."""
    return [
        r[0]
        for r in db.execute(
            "SELECT alias FROM routes WHERE fallback_alias = ? ORDER BY alias", [alias]
        )
    ]


def set_context_trim(
    db: sqlite_utils.Database, actor: str, project: str, enabled: bool
) -> dict[str, Any]:
    """Whether `project`'s prompts too long for every deployment are trimmed (oldest turns
    first, see `gateway.routing.trim`) rather than refused."""
    return update_project(db, actor, project, {"context_trim": enabled})
