"""Admin tokens: shown once, found by hash, a role each, revocable."""

from __future__ import annotations

import re

import pytest
import sqlite_utils

from appliance.errors import ConflictError, NotFoundError
from gateway.errors import InvalidRequest
from gateway.tenancy import store
from tests.gateway.tenancy.conftest import ACTOR


@pytest.mark.parametrize("role", ["admin", "auditor", "finance"])
def test_create_find_revoke(db: sqlite_utils.Database, role: str) -> None:
    row, token = store.create_admin_token(db, ACTOR, "console", role)
    assert re.fullmatch(r"aigw-admin-[A-Za-z0-9]{40}", token)
    assert re.fullmatch(r"adm_[A-Za-z0-9]{16}", row["id"])
    assert "hash" not in row and row["prefix"] == token[:15] + "…"
    assert store.find_admin_token(db, token) == row
    assert store.find_admin_token(db, token + "x") is None
    assert store.list_admin_tokens(db) == [row] == [store.get_admin_token(db, row["id"])]
    revoked = store.revoke_admin_token(db, ACTOR, row["id"])
    assert revoked["revoked_at"] is not None
    assert store.find_admin_token(db, token) is None
    with pytest.raises(ConflictError):
        store.revoke_admin_token(db, ACTOR, row["id"])


def test_bad_input(db: sqlite_utils.Database) -> None:
    with pytest.raises(InvalidRequest, match="role 'root' is unknown"):
        store.create_admin_token(db, ACTOR, "x", "root")
    with pytest.raises(InvalidRequest, match="is not valid"):
        store.create_admin_token(db, ACTOR, "bad name", "admin")
    with pytest.raises(NotFoundError):
        store.revoke_admin_token(db, ACTOR, "adm_nope")
    assert store.list_admin_tokens(db) == []
