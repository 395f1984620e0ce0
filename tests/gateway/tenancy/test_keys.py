"""Gateway keys in the store: shown once, stored as a hash, and their lifecycle rules."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlite_utils

from appliance.errors import ConflictError, NotFoundError
from gateway.errors import InvalidRequest
from gateway.tenancy import store
from tests.gateway.tenancy.conftest import ACTOR


@pytest.fixture
def org(db: sqlite_utils.Database) -> sqlite_utils.Database:
    store.create_department(db, ACTOR, name="eng")
    store.create_project(db, ACTOR, name="search", department="eng")
    store.create_user(db, ACTOR, name="bob", department="eng")
    return db


def _raw(db: sqlite_utils.Database, key_id: str) -> dict[str, Any]:
    return next(iter(db.query("SELECT * FROM keys WHERE id = ?", [key_id])))


def _in(when: str, seconds: float) -> bool:
    t = datetime.fromisoformat(when)
    return abs((t - datetime.now(UTC)).total_seconds() - seconds) < 5


def test_create_shows_the_secret_once_and_stores_its_hash(org: sqlite_utils.Database) -> None:
    row, secret = store.create_key(
        org,
        ACTOR,
        name="ci",
        project="search",
        user="bob",
        models=["gpt-4o*", "claude", "gpt-4o*"],
        cidrs=["10.1.2.3/8", "::1"],
        expires_at="2099-01-01T02:00:00+02:00",
        rpm=60,
        tpm=0,
        budget_micros=5_000_000,
        tags=["team.search", "ci"],
    )
    assert re.fullmatch(r"sk-aigw-[A-Za-z0-9]{40}", secret)
    assert re.fullmatch(r"key_[A-Za-z0-9]{16}", row["id"])
    assert "hash" not in row and "prev_hash" not in row and "secret" not in row
    assert row["prefix"] == secret[:12] + "…"
    assert row["models"] == ["gpt-4o*", "claude"]
    assert row["cidrs"] == ["10.0.0.0/8", "::1/128"]
    assert row["expires_at"] == "2099-01-01T00:00:00.000Z"
    assert (row["rpm"], row["tpm"], row["status"]) == (60, 0, "active")
    raw = _raw(org, row["id"])
    assert raw["hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(v) for v in raw.values())
    assert store.get_key(org, row["id"]) == row
    assert store.list_keys(org, project="search", user="bob") == [row]
    assert store.list_keys(org, user="nobody") == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("models", ["bad pattern"], "model pattern"),
        ("models", "gpt-4o", "array of strings"),
        ("cidrs", ["10.0.0.0/33"], "not an IP network"),
        ("cidrs", ["example.com"], "not an IP network"),
        ("expires_at", "2001-01-01T00:00:00Z", "in the future"),
        ("expires_at", "2099-01-01T00:00:00", "with a zone"),
        ("expires_at", "tomorrow", "with a zone"),
        ("rpm", -1, "non-negative"),
        ("tpm", True, "non-negative"),
        ("budget_micros", 2**64, "non-negative"),
        ("tags", ["Upper"], "tag 'Upper'"),
        ("tags", ["-x"], "is not valid"),
        ("name", "bad name", "is not valid"),
    ],
)
def test_bad_fields_are_refused(
    org: sqlite_utils.Database, field: str, value: Any, message: str
) -> None:
    fields: dict[str, Any] = {"name": "k", "project": "search", field: value}
    with pytest.raises(InvalidRequest, match=message):
        store.create_key(org, ACTOR, **fields)
    assert store.list_keys(org) == []


def test_missing_references(org: sqlite_utils.Database) -> None:
    with pytest.raises(NotFoundError, match="project"):
        store.create_key(org, ACTOR, name="k", project="nope")
    with pytest.raises(NotFoundError, match="user"):
        store.create_key(org, ACTOR, name="k", project="search", user="nope")
    with pytest.raises(NotFoundError):
        store.get_key(org, "key_missing")


def test_update_changes_only_editable_fields(org: sqlite_utils.Database) -> None:
    row, _ = store.create_key(org, ACTOR, name="k", project="search", rpm=10)
    changed = store.update_key(org, ACTOR, row["id"], {"rpm": None, "tags": ["x"], "name": "k2"})
    assert (changed["rpm"], changed["tags"], changed["name"]) == (None, ["x"], "k2")
    for field in ("project", "status", "hash", "prefix"):
        with pytest.raises(InvalidRequest, match="read-only"):
            store.update_key(org, ACTOR, row["id"], {field: "x"})


def test_rotate_keeps_the_old_secret_for_the_grace_period(org: sqlite_utils.Database) -> None:
    row, old = store.create_key(org, ACTOR, name="k", project="search")
    rotated, new = store.rotate_key(org, ACTOR, row["id"], grace_seconds=3600)
    assert new != old and rotated["prefix"] == new[:12] + "…"
    assert _in(rotated["prev_expires_at"], 3600) and rotated["rotated_at"]
    raw = _raw(org, row["id"])
    assert raw["hash"] == hashlib.sha256(new.encode()).hexdigest()
    assert raw["prev_hash"] == hashlib.sha256(old.encode()).hexdigest()
    again, _ = store.rotate_key(org, ACTOR, row["id"], grace_seconds=0)
    assert again["prev_expires_at"] is None and _raw(org, row["id"])["prev_hash"] is None


def test_default_grace_is_a_day_and_bad_grace_is_refused(org: sqlite_utils.Database) -> None:
    row, _ = store.create_key(org, ACTOR, name="k", project="search")
    rotated, _ = store.rotate_key(org, ACTOR, row["id"])
    assert _in(rotated["prev_expires_at"], 86400)
    for grace in (-1, 10**9):
        with pytest.raises(InvalidRequest, match="grace_seconds"):
            store.rotate_key(org, ACTOR, row["id"], grace_seconds=grace)


def test_lifecycle(org: sqlite_utils.Database) -> None:
    row, _ = store.create_key(org, ACTOR, name="k", project="search")
    key_id = row["id"]
    with pytest.raises(ConflictError, match="revoke it before deleting"):
        store.delete_key(org, ACTOR, key_id)
    assert store.disable_key(org, ACTOR, key_id)["status"] == "disabled"
    assert store.disable_key(org, ACTOR, key_id)["status"] == "disabled"  # idempotent
    assert store.enable_key(org, ACTOR, key_id)["status"] == "active"
    store.rotate_key(org, ACTOR, key_id)
    revoked = store.revoke_key(org, ACTOR, key_id)
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    assert revoked["prev_expires_at"] is None and _raw(org, key_id)["prev_hash"] is None
    for act in (store.enable_key, store.disable_key, store.revoke_key):
        with pytest.raises(ConflictError, match="revoked"):
            act(org, ACTOR, key_id)
    with pytest.raises(ConflictError):
        store.rotate_key(org, ACTOR, key_id)
    with pytest.raises(ConflictError):
        store.update_key(org, ACTOR, key_id, {"rpm": 1})
    store.delete_key(org, ACTOR, key_id)
    with pytest.raises(NotFoundError):
        store.delete_key(org, ACTOR, key_id)
    assert store.list_keys(org) == []


def test_expiry_in_the_near_future_is_accepted(org: sqlite_utils.Database) -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    row, _ = store.create_key(org, ACTOR, name="k", project="search", expires_at=soon)
    assert row["expires_at"].endswith("Z") and _in(row["expires_at"], 300)
