"""Masking rules in SQLite: per project, detector -> action, with custom detectors.

Every write is validated by building the project's whole policy with it (a bad regular
expression or an unknown detector is refused with what to fix, before anything is written),
audited and versioned in one transaction, so a running gateway applies it within a second.
`load_policies` compiles every project's policy once, when the gateway loads its catalog.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlite_utils

from appliance.errors import NotFoundError
from appliance.store import transaction, utcnow
from gateway.catalog import bump_version
from gateway.errors import InvalidRequest
from gateway.masking.custom import CUSTOM_PREFIX, CustomDetector, RegexDetector, WordsDetector
from gateway.masking.detectors import BUILTIN
from gateway.masking.errors import PolicyError
from gateway.masking.policy import Action, Policy
from gateway.tenancy.audit import record

ACTIONS = tuple(a.value for a in Action)
_MAX_WORDS = 10_000


def _rows(db: sqlite_utils.Database, project: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM masking_rules"
    args: list[Any] = []
    if project is not None:
        sql += " WHERE project = ?"
        args.append(project)
    cursor = db.execute(sql + " ORDER BY project, detector", args)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """A rule as the API shows it (`words` as a list)."""
    out = dict(row)
    out["words"] = orjson.loads(row["words"]) if row.get("words") else None
    return out


def list_rules(db: sqlite_utils.Database, project: str | None = None) -> list[dict[str, Any]]:
    """Every rule, or one project's."""
    return [_shown(r) for r in _rows(db, project)]


def _detector(row: dict[str, Any]) -> CustomDetector | None:
    name = row["detector"]
    if not name.startswith(CUSTOM_PREFIX):
        return None
    short = name[len(CUSTOM_PREFIX) :]  # the detectors add the prefix themselves
    if row.get("pattern"):
        return RegexDetector(short, row["pattern"])
    return WordsDetector(short, orjson.loads(row["words"] or "[]"))


def _policy(rows: list[dict[str, Any]]) -> Policy:
    rules = {r["detector"]: r["action"] for r in rows}
    custom = [d for d in map(_detector, rows) if d is not None]
    return Policy.build(rules, custom)


def load_policies(db: sqlite_utils.Database) -> dict[str, Policy]:
    """project -> its compiled policy, for projects with at least one rule. A rule that no
    longer compiles (edited in the database by hand) leaves its project out, logged by the
    caller's reload, rather than stopping the gateway."""
    by_project: dict[str, list[dict[str, Any]]] = {}
    for row in _rows(db):
        by_project.setdefault(row["project"], []).append(row)
    policies: dict[str, Policy] = {}
    for project, rows in by_project.items():
        try:
            policies[project] = _policy(rows)
        except (PolicyError, ValueError) as exc:
            raise PolicyError(f"project {project!r}: {exc}") from None
    return policies


def _check_detector(name: str, pattern: str | None, words: list[str] | None) -> None:
    if name.startswith(CUSTOM_PREFIX):
        if (
            len(name) == len(CUSTOM_PREFIX)
            or not name[len(CUSTOM_PREFIX) :].replace("-", "").replace("_", "").isalnum()
        ):
            raise InvalidRequest(
                f"custom detector {name!r}: name it custom:NAME with letters, digits, - and _",
                param="detector",
            )
        if (pattern is None) == (words is None):
            raise InvalidRequest(
                f"custom detector {name!r} needs exactly one of a pattern or a word list",
                param="pattern",
            )
        if words is not None and (
            not words
            or len(words) > _MAX_WORDS
            or not all(isinstance(w, str) and w.strip() for w in words)
        ):
            raise InvalidRequest(
                f"custom detector {name!r}: words must be 1 to {_MAX_WORDS} non-empty strings",
                param="words",
            )
        return
    if name not in BUILTIN:
        raise InvalidRequest(
            f"unknown detector {name!r}; use one of {', '.join(sorted(BUILTIN))} or "
            "custom:NAME with a pattern or words",
            param="detector",
        )
    if pattern is not None or words is not None:
        raise InvalidRequest(
            f"detector {name!r} is built in: a pattern or words are only for custom:NAME",
            param="pattern",
        )


def check_rule(
    detector: str, action: str, pattern: str | None = None, words: list[str] | None = None
) -> None:
    """Refuse (InvalidRequest) a rule `set_rule` would refuse on its own, before any write."""
    if action not in ACTIONS:
        raise InvalidRequest(
            f"unknown action {action!r}; use one of {', '.join(ACTIONS)}", param="action"
        )
    _check_detector(detector, pattern, words)


def policy_of(rules: list[dict[str, Any]]) -> Policy:
    """One project's policy from its rules as `list_rules` shows them, each checked like
    `set_rule` checks it (for trying rules, and for checking a whole file before applying it)."""
    for r in rules:
        check_rule(r["detector"], r["action"], r.get("pattern"), r.get("words"))
    rows = [
        {**r, "words": orjson.dumps(r["words"]).decode() if r.get("words") is not None else None}
        for r in rules
    ]
    try:
        return _policy(rows)
    except (PolicyError, ValueError) as exc:
        raise InvalidRequest(f"masking rules: {exc}", param="detector") from None


def set_rule(
    db: sqlite_utils.Database,
    actor: str,
    project: str,
    detector: str,
    action: str,
    *,
    pattern: str | None = None,
    words: list[str] | None = None,
) -> dict[str, Any]:
    """Create or replace what `project` does when `detector` fires."""
    check_rule(detector, action, pattern, words)
    with transaction(db):
        if db.execute("SELECT 1 FROM projects WHERE name = ?", [project]).fetchone() is None:
            raise NotFoundError(f"no project named {project!r}")
        rows = {r["detector"]: r for r in _rows(db, project)}
        before = rows.get(detector)
        now = utcnow()
        row = {
            "project": project,
            "detector": detector,
            "action": action,
            "pattern": pattern,
            "words": orjson.dumps(words).decode() if words is not None else None,
            "created_at": before["created_at"] if before else now,
            "updated_at": now,
        }
        rows[detector] = row
        try:
            _policy(list(rows.values()))  # the whole policy must still compile
        except (PolicyError, ValueError) as exc:
            raise InvalidRequest(f"masking rule {detector!r}: {exc}", param="detector") from None
        db.table("masking_rules").upsert(row, pk=("project", "detector"))
        record(
            db,
            actor,
            "create" if before is None else "update",
            "masking_rule",
            f"{project}/{detector}",
            _shown(before) if before else None,
            _shown(row),
        )
        bump_version(db)
    return _shown(row)


def remove_rule(db: sqlite_utils.Database, actor: str, project: str, detector: str) -> None:
    """Stop applying `detector` in `project`."""
    with transaction(db):
        rows = {r["detector"]: r for r in _rows(db, project)}
        before = rows.get(detector)
        if before is None:
            raise NotFoundError(f"project {project!r} has no masking rule for {detector!r}")
        db.execute(
            "DELETE FROM masking_rules WHERE project = ? AND detector = ?", [project, detector]
        )
        record(db, actor, "delete", "masking_rule", f"{project}/{detector}", _shown(before), None)
        bump_version(db)
