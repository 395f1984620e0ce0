"""The admin audit trail: one hash-chained row per change, written in the change's transaction.

Each row's `hash` covers the previous row's hash and this row's fields, so editing or deleting
a row breaks the chain at the next one. Secret-ish fields are stripped before anything is
written: the trail is meant to be exported and read by auditors. `gateway.audit.verify` walks
this chain and the ledger's, and says what is wrong where.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Mapping
from typing import Any

import orjson
import sqlite_utils

from appliance.store import utcnow

GENESIS = "0" * 64
SECRET_FIELDS = frozenset({"hash", "prev_hash", "secret", "api_key", "value", "token"})


def scrub(value: Any) -> Any:
    """`value` with every secret-ish field removed, at any depth."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in SECRET_FIELDS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def _dump(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def digest(prev_hash: str, fields: list[Any]) -> str:
    """SHA-256 over the previous hash and the canonical JSON (sorted keys) of the fields."""
    canonical = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + canonical).hexdigest()


def record(
    db: sqlite_utils.Database | sqlite3.Connection,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> int:
    """Append one audit row; call inside the change's transaction. Returns the row id."""
    last = db.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    prev_hash = last[0] if last else GENESIS
    ts = utcnow()
    before, after = scrub(before), scrub(after)
    hashed = digest(prev_hash, [ts, actor, action, object_type, object_id, before, after])
    cursor = db.execute(
        "INSERT INTO audit (ts, actor, action, object_type, object_id, before, after, "
        "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [ts, actor, action, object_type, object_id, _dump(before), _dump(after), prev_hash, hashed],
    )
    return int(cursor.lastrowid or 0)


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def entry_fields(row: Mapping[str, Any] | sqlite3.Row) -> list[Any]:
    """What a stored row's hash covers, in the order `record` hashed it."""
    return [
        row["ts"],
        row["actor"],
        row["action"],
        row["object_type"],
        row["object_id"],
        _loads(row["before"]),
        _loads(row["after"]),
    ]


def verify_chain(db: sqlite_utils.Database) -> int | None:
    """The id of the first row whose link or content does not check out; None when intact.

    The quick check; `gateway.audit.verify` also says what is wrong and checks the ledger.
    """
    expected = GENESIS
    for row in db.query("SELECT * FROM audit ORDER BY id"):
        if row["prev_hash"] != expected or row["hash"] != digest(expected, entry_fields(row)):
            return int(row["id"])
        expected = row["hash"]
    return None


def list_audit(
    db: sqlite_utils.Database,
    limit: int = 100,
    before_id: int | None = None,
    object_type: str | None = None,
    actor: str | None = None,
) -> list[dict[str, Any]]:
    """Audit rows, newest first; page with `before_id` = the last id of the previous page."""
    where: list[str] = []
    args: list[Any] = []
    if before_id is not None:
        where.append("id < ?")
        args.append(before_id)
    if object_type is not None:
        where.append("object_type = ?")
        args.append(object_type)
    if actor is not None:
        where.append("actor = ?")
        args.append(actor)
    sql = "SELECT * FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    rows = list(db.query(sql, [*args, limit]))
    for row in rows:
        row["before"], row["after"] = _loads(row["before"]), _loads(row["after"])
    return rows
