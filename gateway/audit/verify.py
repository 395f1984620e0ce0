"""Checking both hash chains: the admin audit trail and the ledger, in one read snapshot.

`verify` walks the `audit` table from the genesis hash, then the ledger from the genesis hash
or a retention anchor, streaming in chunks (flat memory at any size, a few microseconds a
record), and holds each chain against the head last logged (`gateway.audit.heads`). Each walk
stops at its chain's first bad record and says what is wrong:

- edited: the record's hash does not match its fields (a field or the hash was changed);
- deleted: ids are missing with no retention anchor for them, or the record no longer links to
  the one before it;
- reordered: the record that belongs next turns up further on;
- truncated: the chain ends before the head logged earlier (records deleted from its end);
- rewritten: the record at the logged head's id is not the logged one (the chain was rebuilt).

Ledger records written before the chain existed (no hash) may only come first; they are counted
as `unchained` and skipped.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from gateway.audit.heads import Head, stored_heads
from gateway.ledger.chain import Layout, digest, table_layout
from gateway.ledger.retention import ANCHOR_ACTION
from gateway.tenancy import audit

CHUNK = 5000
# How far past a bad record to look for the one that belongs there (to name a reordering).
LOOKAHEAD = 10_000
_ADMIN_SQL = (
    "SELECT id, ts, actor, action, object_type, object_id, before, after, prev_hash, hash "
    "FROM audit WHERE id > ? ORDER BY id"
)


@dataclass(frozen=True, slots=True)
class Problem:
    """The first bad record of a chain: its table, id, what is wrong, and in words."""

    table: str
    id: int
    kind: str  # edited, deleted, reordered, truncated, rewritten
    message: str

    def to_json(self) -> dict[str, Any]:
        """A JSON object."""
        return {"table": self.table, "id": self.id, "kind": self.kind, "message": self.message}


@dataclass(frozen=True, slots=True)
class Anchor:
    """A retention pass: the ids it dropped and the hash of the last one."""

    first_id: int
    last_id: int
    hash: str


@dataclass(slots=True)
class ChainReport:
    """What one walk found."""

    chain: str  # admin or ledger
    table: str
    logged: Head | None = None
    records: int = 0
    head: Head = field(default_factory=lambda: Head(0, audit.GENESIS))
    start: Anchor | None = None  # the retention anchor the ledger's walk started from
    unchained: int = 0
    problem: Problem | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON object."""
        out: dict[str, Any] = {
            "ok": self.problem is None,
            "records": self.records,
            "head": {"id": self.head.id, "hash": self.head.hash},
            "logged_head": None if self.logged is None else asdict(self.logged),
            "problem": None if self.problem is None else self.problem.to_json(),
        }
        if self.chain == "ledger":
            out["start"] = None if self.start is None else asdict(self.start)
            out["unchained"] = self.unchained
        return out


@dataclass(frozen=True, slots=True)
class Report:
    """Both walks; `problem` is the first found (the admin chain's before the ledger's)."""

    admin: ChainReport
    ledger: ChainReport
    logged_at: str | None

    @property
    def problem(self) -> Problem | None:
        """The first bad record, or None when both chains check out."""
        return self.admin.problem or self.ledger.problem

    def to_json(self) -> dict[str, Any]:
        """A JSON object (the admin API's answer)."""
        problem = self.problem
        return {
            "ok": problem is None,
            "problem": None if problem is None else problem.to_json(),
            "admin": self.admin.to_json(),
            "ledger": self.ledger.to_json(),
            "logged_at": self.logged_at,
        }


def verify(conn: sqlite3.Connection, logged: dict[str, Head] | None = None) -> Report:
    """Walk both chains in one read snapshot; `logged` replaces the heads kept in settings
    (e.g. heads read from the system log)."""
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")
    try:
        stored = stored_heads(conn)
        heads = {"admin": stored.admin, "ledger": stored.ledger} if stored else {}
        heads.update(logged or {})
        admin = verify_admin(conn, heads.get("admin"))
        ledger = verify_ledger(conn, retention_anchors(conn), heads.get("ledger"))
    finally:
        if began:
            conn.execute("COMMIT")
    logged_at = "given" if logged else (stored.ts if stored else None)
    return Report(admin, ledger, logged_at)


def retention_anchors(conn: sqlite3.Connection) -> dict[int, Anchor]:
    """The retention passes recorded in the admin trail, by the last id each dropped."""
    out = {}
    sql = "SELECT after FROM audit WHERE action = ? ORDER BY id"
    for (after,) in conn.execute(sql, (ANCHOR_ACTION,)):
        try:
            data = orjson.loads(after)
            out[int(data["last_id"])] = Anchor(
                int(data["first_id"]), int(data["last_id"]), str(data["last_hash"])
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # an edited anchor: the admin chain's walk reports the edit
    return out


# --- the admin trail ------------------------------------------------------------------------


def verify_admin(
    conn: sqlite3.Connection, logged: Head | None = None, chunk: int = CHUNK
) -> ChainReport:
    """Walk the admin audit chain from the genesis hash."""
    report = ChainReport("admin", "audit", logged)
    cursor = conn.cursor()
    cursor.row_factory = sqlite3.Row
    cursor.execute(_ADMIN_SQL, (0,))
    expected, prev = audit.GENESIS, None
    while rows := cursor.fetchmany(chunk):
        for row in rows:
            fields = audit.entry_fields(row)
            if row["prev_hash"] != expected or row["hash"] != audit.digest(expected, fields):
                report.problem = _admin_problem(conn, row, fields, expected, prev)
                return report
            report.problem = _at_logged("audit", logged, row["id"], row["hash"])
            if report.problem is not None:
                return report
            expected, prev = row["hash"], row["id"]
            report.records += 1
            report.head = Head(prev, expected)
    report.problem = _past_end("audit", logged, prev or 0)
    return report


def _admin_problem(
    conn: sqlite3.Connection, row: sqlite3.Row, fields: list[Any], expected: str, prev: int | None
) -> Problem:
    rid = row["id"]
    missing = _gap(prev, rid)
    if missing is not None:
        return Problem("audit", rid, "deleted", f"records {missing} are missing before it")
    if row["prev_hash"] == expected:
        return Problem("audit", rid, "edited", "its hash does not match its fields: it was changed")
    moved = _admin_successor(conn, rid, expected)
    if moved is not None:
        return _reordered("audit", rid, prev, moved)
    if row["hash"] == audit.digest(row["prev_hash"], fields):
        return Problem(
            "audit",
            rid,
            "deleted",
            f"it links to a record that is gone from after {_record(prev)}: a record was "
            "removed and the later ids renumbered",
        )
    return Problem("audit", rid, "edited", "neither its link nor its hash checks out")


def _admin_successor(conn: sqlite3.Connection, after_id: int, expected: str) -> int | None:
    """The id of a later record that links to `expected` and checks out."""
    cursor = conn.cursor()
    cursor.row_factory = sqlite3.Row
    for row in cursor.execute(_ADMIN_SQL + " LIMIT ?", (after_id, LOOKAHEAD)):
        if row["prev_hash"] == expected and row["hash"] == audit.digest(
            expected, audit.entry_fields(row)
        ):
            return int(row["id"])
    return None


# --- the ledger -----------------------------------------------------------------------------


def verify_ledger(
    conn: sqlite3.Connection,
    anchors: dict[int, Anchor] | None = None,
    logged: Head | None = None,
    chunk: int = CHUNK,
) -> ChainReport:
    """Walk the ledger's chain from the genesis hash or the retention anchor before it."""
    report = ChainReport("ledger", "usage", logged)
    anchors = retention_anchors(conn) if anchors is None else anchors
    layout = table_layout(conn)
    sql = f"SELECT id, {', '.join(layout.columns)}, hash FROM usage WHERE id > ? ORDER BY id"
    cursor = conn.execute(sql, (0,))
    expected: str | None = None  # None: no chained record seen yet
    prev: int | None = None
    while rows := cursor.fetchmany(chunk):
        for row in rows:
            rid, hashed = row[0], row[-1]
            if hashed is None:
                if expected is None:  # written before the chain began
                    report.unchained += 1
                    prev = rid
                    continue
                report.problem = Problem("usage", rid, "edited", "its hash was removed")
                return report
            if expected is None or rid != (prev or 0) + 1:
                anchor = anchors.get(rid - 1)
                if anchor is not None and (prev is None or anchor.first_id <= prev + 1):
                    expected = anchor.hash  # the records before it went by retention
                    report.start = report.start or anchor
                elif expected is None:
                    expected = audit.GENESIS
                else:
                    report.problem = Problem(
                        "usage",
                        rid,
                        "deleted",
                        f"records {_gap(prev, rid)} are missing before it, and no retention "
                        "anchor covers them",
                    )
                    return report
            if hashed != digest(expected, row[1:-1], layout.defaults):
                report.problem = _ledger_problem(conn, layout, anchors, rid, expected, prev)
                return report
            report.problem = _at_anchor(anchors.get(rid), rid, hashed) or _at_logged(
                "usage", logged, rid, hashed
            )
            if report.problem is not None:
                return report
            expected, prev = hashed, rid
            report.records += 1
            report.head = Head(rid, hashed)
    report.problem = _past_end("usage", logged, prev or 0)
    return report


def _ledger_problem(
    conn: sqlite3.Connection,
    layout: Layout,
    anchors: dict[int, Anchor],
    rid: int,
    expected: str,
    prev: int | None,
) -> Problem:
    if prev is None and rid > 1 and rid - 1 not in anchors:
        first = max((a.last_id for a in anchors.values() if a.last_id < rid), default=0) + 1
        return Problem(
            "usage",
            rid,
            "deleted",
            f"records {first}..{rid - 1} are missing before it, and no retention anchor "
            "covers them",
        )
    sql = f"SELECT id, {', '.join(layout.columns)}, hash FROM usage WHERE id > ? ORDER BY id"
    for row in conn.execute(sql + " LIMIT ?", (rid, LOOKAHEAD)):
        if row[-1] == digest(expected, row[1:-1], layout.defaults):
            return _reordered("usage", rid, prev, row[0])
    return Problem(
        "usage",
        rid,
        "edited",
        "its hash does not match its fields: it was changed (or records before it were "
        "removed and the later ids renumbered)",
    )


def _at_anchor(anchor: Anchor | None, rid: int, hashed: str) -> Problem | None:
    """A record a retention pass anchored (and has not dropped yet) must have its hash."""
    if anchor is None or anchor.hash == hashed:
        return None
    return Problem(
        "usage",
        rid,
        "rewritten",
        "a retention anchor recorded another hash for it: the ledger was rewritten",
    )


# --- shared ---------------------------------------------------------------------------------


def _gap(prev: int | None, rid: int) -> str | None:
    """The ids missing between the previous record and this one, as `a..b`."""
    first = (prev or 0) + 1
    return None if rid <= first else f"{first}..{rid - 1}"


def _record(rid: int | None) -> str:
    return "the start" if rid is None else f"record {rid}"


def _reordered(table: str, rid: int, prev: int | None, moved: int) -> Problem:
    return Problem(
        table,
        rid,
        "reordered",
        f"it does not follow {_record(prev)}; the record that does is at id {moved}",
    )


def _at_logged(table: str, logged: Head | None, rid: int, hashed: str) -> Problem | None:
    """The record at the logged head's id must be the one logged."""
    if logged is None or logged.id != rid or logged.hash is None or logged.hash == hashed:
        return None
    return Problem(
        table,
        rid,
        "rewritten",
        f"it is not the record logged as the chain's head (hash {logged.hash}): the chain was "
        "rewritten",
    )


def _past_end(table: str, logged: Head | None, last: int) -> Problem | None:
    """A chain that ends before the logged head lost its last records."""
    if logged is None or logged.id <= last:
        return None
    return Problem(
        table,
        last + 1,
        "truncated",
        f"the chain ends at id {last} but its head was logged at id {logged.id}: records "
        f"{last + 1}..{logged.id} were deleted",
    )
