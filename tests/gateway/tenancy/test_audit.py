"""The audit trail: every change with before/after, no secrets, and a chain that shows edits."""

from __future__ import annotations

import hashlib

import sqlite_utils

from gateway import catalog
from gateway.tenancy import audit, store
from tests.gateway.tenancy.conftest import ACTOR


def _everything(db: sqlite_utils.Database) -> list[str]:
    """Touch every kind of object; returns the secrets handed out (and their hashes)."""
    store.create_department(db, ACTOR, name="eng")
    store.update_department(db, ACTOR, "eng", {"description": "R&D"})
    store.create_project(db, ACTOR, name="search", department="eng")
    store.create_user(db, ACTOR, name="bob", department="eng")
    key, k1 = store.create_key(db, ACTOR, name="k", project="search", user="bob")
    store.update_key(db, ACTOR, key["id"], {"rpm": 5})
    _, k2 = store.rotate_key(db, ACTOR, key["id"], 60)
    store.disable_key(db, ACTOR, key["id"])
    store.enable_key(db, ACTOR, key["id"])
    store.revoke_key(db, ACTOR, key["id"])
    store.delete_key(db, ACTOR, key["id"])
    token, t1 = store.create_admin_token(db, ACTOR, "ops", "auditor")
    store.revoke_admin_token(db, ACTOR, token["id"])
    provider = catalog.validate_provider("p", "openai", None, "P_KEY")
    catalog.add_provider(db, provider, actor=ACTOR)
    catalog.add_model(db, catalog.ModelDef("m", "p", "gpt-4o"), actor=ACTOR)
    catalog.remove_model(db, "m", actor=ACTOR)
    catalog.remove_provider(db, "p", actor=ACTOR)
    secrets = [k1, k2, t1]
    return secrets + [hashlib.sha256(s.encode()).hexdigest() for s in secrets]


def test_every_change_is_recorded_with_before_and_after(db: sqlite_utils.Database) -> None:
    _everything(db)
    rows = list(reversed(audit.list_audit(db, limit=100)))
    assert [(r["object_type"], r["action"]) for r in rows] == [
        ("department", "create"),
        ("department", "update"),
        ("project", "create"),
        ("user", "create"),
        ("key", "create"),
        ("key", "update"),
        ("key", "rotate"),
        ("key", "disable"),
        ("key", "enable"),
        ("key", "revoke"),
        ("key", "delete"),
        ("admin_token", "create"),
        ("admin_token", "revoke"),
        ("provider", "create"),
        ("model", "create"),
        ("model", "delete"),
        ("provider", "delete"),
    ]
    assert all(r["actor"] == ACTOR for r in rows)
    update = rows[1]
    assert update["before"]["description"] == "" and update["after"]["description"] == "R&D"
    assert rows[0]["before"] is None and rows[-1]["after"] is None
    assert rows[5]["before"]["rpm"] is None and rows[5]["after"]["rpm"] == 5
    assert audit.verify_chain(db) is None


def test_no_secret_reaches_the_audit_table(db: sqlite_utils.Database) -> None:
    planted = _everything(db)
    dump = "\n".join(str(tuple(r)) for r in db.execute("SELECT * FROM audit").fetchall())
    for secret in planted:
        assert secret not in dump
    for row in audit.list_audit(db, limit=100):
        for side in (row["before"], row["after"]):
            assert side is None or not set(side) & audit.SECRET_FIELDS


def test_scrub_removes_secret_fields_at_any_depth() -> None:
    value = {"a": 1, "token": "t", "nested": [{"api_key": "k", "b": 2}], "value": "v"}
    assert audit.scrub(value) == {"a": 1, "nested": [{"b": 2}]}


def test_catalog_writes_without_an_actor_are_not_audited(db: sqlite_utils.Database) -> None:
    catalog.add_provider(db, catalog.validate_provider("p", "openai", None, None))
    assert audit.list_audit(db) == []


def test_an_edited_row_breaks_the_chain(db: sqlite_utils.Database) -> None:
    _everything(db)
    db.execute("UPDATE audit SET actor = 'someone-else' WHERE id = 5")
    assert audit.verify_chain(db) == 5


def test_a_deleted_row_breaks_the_chain(db: sqlite_utils.Database) -> None:
    _everything(db)
    db.execute("DELETE FROM audit WHERE id = 3")
    assert audit.verify_chain(db) == 4


def test_a_rehashed_row_still_breaks_the_link_after_it(db: sqlite_utils.Database) -> None:
    _everything(db)
    # A forger who recomputes the edited row's own hash must recompute every later row too.
    db.execute('UPDATE audit SET after = \'{"description": "forged"}\' WHERE id = 2')
    row = next(iter(db.query("SELECT * FROM audit WHERE id = 2")))
    fields = [row[k] for k in ("ts", "actor", "action", "object_type", "object_id")]
    forged = audit.digest(row["prev_hash"], [*fields, None, {"description": "forged"}])
    db.execute("UPDATE audit SET hash = ?, before = NULL WHERE id = 2", [forged])
    assert audit.verify_chain(db) == 3


def test_paging_and_filters(db: sqlite_utils.Database) -> None:
    _everything(db)
    first = audit.list_audit(db, limit=5)
    second = audit.list_audit(db, limit=5, before_id=first[-1]["id"])
    assert [r["id"] for r in first + second] == list(range(17, 7, -1))
    keys = audit.list_audit(db, object_type="key")
    assert len(keys) == 7 and {r["object_type"] for r in keys} == {"key"}
    assert audit.list_audit(db, actor="nobody") == []
