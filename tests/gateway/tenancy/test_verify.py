"""The admin trail's chain tampered with on a real SQLite file: `verify` names the first bad
record and what is wrong (edited, deleted, reordered, truncated, rewritten)."""

from __future__ import annotations

import sqlite3

import pytest
import sqlite_utils

from appliance.store import transaction
from gateway.audit.heads import Head, current_heads, store_heads
from gateway.audit.verify import verify, verify_admin
from gateway.tenancy import audit, store
from tests.gateway.tenancy.conftest import ACTOR

COLUMNS = ("ts", "actor", "action", "object_type", "object_id", "before", "after")


@pytest.fixture
def trail(db: sqlite_utils.Database) -> sqlite3.Connection:
    """20 admin changes, each in its own transaction, as the admin API makes them."""
    store.create_department(db, ACTOR, name="eng")
    for i in range(19):
        store.update_department(db, ACTOR, "eng", {"description": f"v{i}"})
    assert db.execute("SELECT count(*) FROM audit").fetchone()[0] == 20
    return db.conn


def _found(conn: sqlite3.Connection, logged: Head | None = None) -> tuple[int, str] | None:
    problem = verify_admin(conn, logged).problem
    return None if problem is None else (problem.id, problem.kind)


def _swap(conn: sqlite3.Connection, a: int, b: int) -> None:
    cols = (*COLUMNS, "prev_hash", "hash")
    select = f"SELECT {', '.join(cols)} FROM audit WHERE id = ?"
    row_a, row_b = (conn.execute(select, (i,)).fetchone() for i in (a, b))
    update = f"UPDATE audit SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?"
    conn.execute(update, (*row_b, a))
    conn.execute(update, (*row_a, b))


def _rewrite(conn: sqlite3.Connection) -> None:
    """Rebuild the whole chain consistently, as a forger with the code would."""
    prev = audit.GENESIS
    for row in conn.execute(f"SELECT id, {', '.join(COLUMNS)} FROM audit ORDER BY id").fetchall():
        fields = audit.entry_fields(dict(zip(("id", *COLUMNS), row, strict=True)))
        hashed = audit.digest(prev, fields)
        conn.execute(
            "UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", (prev, hashed, row[0])
        )
        prev = hashed


def test_an_intact_trail_verifies(trail: sqlite3.Connection) -> None:
    report = verify_admin(trail)
    assert report.problem is None and report.records == 20 and report.head.id == 20


def test_an_edited_record_is_named(trail: sqlite3.Connection) -> None:
    trail.execute("UPDATE audit SET actor = 'someone-else' WHERE id = 7")
    assert _found(trail) == (7, "edited")


def test_a_deleted_record_is_named(trail: sqlite3.Connection) -> None:
    trail.execute("DELETE FROM audit WHERE id = 7")
    problem = verify_admin(trail).problem
    assert problem is not None and (problem.id, problem.kind) == (8, "deleted")
    assert "records 7..7 are missing" in problem.message


def test_a_deleted_first_record_is_named(trail: sqlite3.Connection) -> None:
    trail.execute("DELETE FROM audit WHERE id = 1")
    assert _found(trail) == (2, "deleted")


def test_a_deleted_record_with_later_ids_renumbered_is_named(trail: sqlite3.Connection) -> None:
    trail.execute("DELETE FROM audit WHERE id = 7")
    trail.execute("UPDATE audit SET id = id - 1 WHERE id > 7")
    assert _found(trail) == (7, "deleted")


def test_swapped_records_are_named_as_reordered(trail: sqlite3.Connection) -> None:
    _swap(trail, 5, 9)
    problem = verify_admin(trail).problem
    assert problem is not None and (problem.id, problem.kind) == (5, "reordered")
    assert "at id 9" in problem.message


def test_a_truncated_tail_is_caught_by_the_logged_head(trail: sqlite3.Connection) -> None:
    store_heads(trail, current_heads(trail))
    trail.execute("DELETE FROM audit WHERE id > 17")
    assert _found(trail) is None  # the chain alone cannot tell
    problem = verify(trail).problem
    assert problem is not None and (problem.table, problem.id, problem.kind) == (
        "audit",
        18,
        "truncated",
    )
    assert "records 18..20 were deleted" in problem.message


def test_a_consistently_rewritten_trail_is_caught_by_the_logged_head(
    trail: sqlite3.Connection,
) -> None:
    logged = current_heads(trail)
    store_heads(trail, logged)
    trail.execute("UPDATE audit SET actor = 'forger' WHERE id = 3")
    _rewrite(trail)
    assert _found(trail) is None  # a consistent fresh chain
    assert _found(trail, logged.admin) == (20, "rewritten")
    trail.execute("DELETE FROM audit")  # the whole table replaced by a shorter history
    with transaction(sqlite_utils.Database(trail)):
        audit.record(trail, ACTOR, "create", "department", "fresh", None, {"name": "fresh"})
    assert _found(trail, logged.admin) == (2, "truncated")


def test_the_quick_check_and_the_walk_agree(trail: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(trail)
    trail.execute("UPDATE audit SET after = NULL WHERE id = 12")
    assert audit.verify_chain(db) == 12 == verify(trail).admin.problem.id  # type: ignore[union-attr]
